"""Helpers shared by the ecosystem tests (SDK, CLI, browser): the `Service` handle and MP4 decoding."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.sec_support import create_api_key


@dataclass(frozen=True)
class Service:
    """A running gateway (with a tiny-model worker behind it) as the clients see it."""

    url: str  # e.g. http://127.0.0.1:PORT (no /v1)
    api_key: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def decode_mp4(data: bytes) -> tuple[int, int, int, int]:
    """(frames, width, height, fps) of an MP4, decoded with PyAV (FFmpeg)."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        fps = int(round(float(stream.average_rate or stream.guessed_rate or 0)))
        frames = 0
        width = height = 0
        for frame in container.decode(stream):
            frames += 1
            width, height = frame.width, frame.height
    return frames, width, height, fps


def start_service(gateway_factory: Callable[..., Any], *, key_name: str) -> tuple[Service, Any]:
    """A gateway with auth on (behind the session's tiny worker) and a fresh API key for it.

    Returns the `Service` and the gateway `ServiceProcess` (stop it when done)."""
    gw = gateway_factory(auth=True, poll_after_ms=200, image_url_fetch=True, image_url_allow_insecure=True)
    return Service(url=gw.url, api_key=create_api_key(gw.env, f"{key_name}-{gw.pid}")), gw


def service_fixture(key_name: str) -> Any:
    """A module-scoped ``service`` fixture: `start_service` behind the session's tiny-ti2v worker.

    Use as ``service = service_fixture("cli")`` in a test module."""

    @pytest.fixture(scope="module")
    def service(gateway_factory: Callable[..., Any], tiny_worker: Any) -> Iterator[Service]:
        svc, gw = start_service(gateway_factory, key_name=key_name)
        yield svc
        gw.stop()

    return service
