"""The real `openai` SDK's `videos.extend`, `videos.edit` and `videos.remix` against wanserve, with
uploaded files, and the dict-reference wire format via the SDK's generic `client.post` (SDK 3.60
refuses `{"id": ...}` for extend/edit client-side). Auth is on: a source must be the caller's."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from typing import Any, cast

import av
import httpx
import openai
import pytest
from openai.types import Video

from tests.integration.eco_support import Service, start_service
from tests.integration.test_video_sources import mp4
from tests.sec_support import create_api_key

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

FAST: dict[str, Any] = {"num_inference_steps": 2}


@pytest.fixture(scope="module")
def service(gateway_factory: Callable[..., Any], tiny_worker: Any) -> Iterator[tuple[Service, str]]:
    svc, gw = start_service(gateway_factory, key_name="sources")
    yield svc, create_api_key(gw.env, f"other-{gw.pid}")
    gw.stop()


def _client(url: str, key: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key or "unused", max_retries=0)


def _frames(client: openai.OpenAI, vid: str) -> int:
    data = client.videos.download_content(vid).read()
    with av.open(io.BytesIO(data)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def test_sdk_extend_edit_remix(service: tuple[Service, str]) -> None:
    svc, other_key = service
    client = _client(svc.url, svc.api_key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        src = client.videos.create_and_poll(
            prompt="a red fox",
            model="tiny-ti2v",
            seconds=cast(Any, "0.3"),
            extra_body=FAST,
            poll_interval_ms=100,
        )
        assert src.status == "completed"
        clip = ("clip.mp4", mp4(9, 32, 32), "video/mp4")

        ext = client.videos.extend(prompt="it runs on", seconds=cast(Any, "0.5"), video=clip, extra_body=FAST)
        ext = client.videos.poll(ext.id, poll_interval_ms=100)
        assert ext.status == "completed" and _frames(client, ext.id) == 9 + 12

        edit = client.videos.edit(prompt="a blue fox", video=clip, extra_body={"strength": "0.5", **FAST})
        edit = client.videos.poll(edit.id, poll_interval_ms=100)
        assert edit.status == "completed" and edit.to_dict()["parameters"]["strength"] == 0.5

        remix = client.videos.remix(src.id, prompt="a red fox at night")
        assert remix.remixed_from_video_id == src.id
        remix = client.videos.poll(remix.id, poll_interval_ms=100)
        assert remix.status == "completed" and remix.seconds == src.seconds
        assert remix.to_dict()["seed"] == src.to_dict()["seed"]

        # the dict reference, as JSON, through the SDK's own transport
        by_ref = client.post(
            "/videos/extensions",
            body={"prompt": "and on", "seconds": "0.5", "video": {"id": src.id}, **FAST},
            cast_to=Video,
        )
        by_ref = client.videos.poll(by_ref.id, poll_interval_ms=100)
        assert by_ref.status == "completed" and by_ref.to_dict()["source_video_id"] == src.id
        edit_ref = client.post(
            "/videos/edits", body={"prompt": "x", "video": {"id": src.id}, **FAST}, cast_to=Video
        )
        assert client.videos.poll(edit_ref.id, poll_interval_ms=100).status == "completed"

        # another key's video is not a source for this caller
        stranger = _client(svc.url, other_key)
        with pytest.raises(openai.NotFoundError):
            stranger.post(
                "/videos/extensions",
                body={"prompt": "x", "seconds": "1", "video": {"id": src.id}},
                cast_to=Video,
            )
        with pytest.raises(openai.NotFoundError):
            stranger.videos.remix(src.id, prompt="mine now")
        with pytest.raises(openai.BadRequestError):
            client.videos.extend(
                prompt="x", seconds=cast(Any, "1"), video=("x.mp4", b"junk" * 100, "video/mp4")
            )
    assert httpx.get(svc.url + "/healthz").status_code == 200
