"""Live previews end to end: a real demo-model worker publishes `video.preview` events that flow
through the SSE stream as decodable WebP strips; the latest is served at /preview (owner-only); a
late reader gets only the newest; the job log stays free of them; the CLI saves the last one."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from app.cli.client import parse_sse
from app.core.previews import image_bytes
from tests.integration.eco_support import Service, start_service
from tests.integration.test_cli import wanserve
from tests.sec_support import create_api_key
from tests.service_support import start_worker

pytestmark = [pytest.mark.integration]

DEMO = "wanserve-demo"


@pytest.fixture(scope="module")
def served(
    gateway_factory: Callable[..., Any], redis_url: str, service_data_dir: Path
) -> Iterator[tuple[Service, Any]]:
    # 20 steps at >= 50 ms each and a preview at most every 0.2 s: a few previews per job
    worker = start_worker(
        redis_url, service_data_dir, model=DEMO, timeout=300, debug_step_delay_s=0.05, preview_every_s=0.2
    )
    svc, gw = start_service(gateway_factory, key_name="previews")
    yield svc, gw
    gw.stop()
    worker.stop()


def _events(http: httpx.Client, vid: str) -> list[Any]:
    out = []
    with http.stream("GET", f"/v1/videos/{vid}/events", timeout=httpx.Timeout(30, read=120)) as r:
        assert r.status_code == 200
        for ev in parse_sse(r.iter_lines()):
            out.append(ev)
            if ev.event in ("video.completed", "video.failed", "video.cancelled"):
                break
    return out


def _webp(raw: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(raw))
    assert img.format == "WEBP"
    img.load()
    return img


def test_previews_flow_through_sse_and_the_preview_route(served: tuple[Service, Any]) -> None:
    service, gw = served
    body = {"model": DEMO, "prompt": "a red circle moves slowly to the left", "num_inference_steps": 20}
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=30) as http:
        vid = http.post("/v1/videos", json=body).json()["id"]
        events = _events(http, vid)
        assert events[-1].event == "video.completed", [e.event for e in events]
        previews = [json.loads(e.data) for e in events if e.event == "video.preview"]
        assert previews, [e.event for e in events]
        for p in previews:
            assert p["id"] == vid and 1 <= p["step"] < p["total_steps"] == 20
            assert len(p["image"]) <= 48_000
            img = _webp(image_bytes(p["image"]))
            # demo clips are 32x32 with 5 latent frames: 4 square frames of 128 px side by side
            assert img.size == (p["width"], p["height"]) == (128 * p["frames"], 128) and p["frames"] == 4
            colours = np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)
            assert len(colours) > 8  # a picture, not a flat fill
        steps = [p["step"] for p in previews]
        assert steps == sorted(steps) and len(set(steps)) == len(steps)

        latest = http.get(f"/v1/videos/{vid}/preview")
        assert latest.status_code == 200 and latest.headers["content-type"] == "image/webp"
        assert latest.headers["x-preview-step"] == str(steps[-1])
        assert _webp(latest.content).size == (previews[-1]["width"], previews[-1]["height"])

        other = create_api_key(gw.env, f"previews-other-{time.monotonic_ns()}")
        stranger = http.get(f"/v1/videos/{vid}/preview", headers={"Authorization": f"Bearer {other}"})
        assert stranger.status_code == 404  # owner-only

        replay = _events(http, vid)  # a reader after the fact: only the newest preview
        replayed = [json.loads(e.data)["step"] for e in replay if e.event == "video.preview"]
        assert replayed == [steps[-1]]
        assert len([e for e in replay if e.event == "video.progress"]) == 20

        log = http.get(f"/v1/videos/{vid}/logs").json()["data"]
        assert not [ln for ln in log if ln["event"] == "video.preview"]

        video = http.get(f"/v1/videos/{vid}/content")
        assert video.status_code == 200 and len(video.content) > 1000  # previews changed nothing else


def test_cli_saves_the_last_preview(served: tuple[Service, Any], tmp_path: Path) -> None:
    service, _ = served
    out, preview = tmp_path / "v.mp4", tmp_path / "preview.webp"
    r = wanserve(
        service, "generate", "a blue square slides up", "--model", DEMO, "--steps", "20",
        "--out", str(out), "--preview-out", str(preview),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 1000
    img = _webp(preview.read_bytes())
    assert img.height == 128 and img.width in (128, 256, 384, 512)
    assert not (tmp_path / "preview.webp.part").exists()
