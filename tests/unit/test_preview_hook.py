"""Live previews, worker and store side, against a real redis-server: the WebP strip, throttling,
best effort, fencing, the latest-preview key and the SSE backlog (older previews superseded)."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from app.core import keys
from app.core.config import Settings
from app.core.jobstore import JobStore
from app.core.jobstore_async import AsyncJobStore
from app.core.previews import PreviewPublisher, image_bytes, latest_preview
from app.core.redisconn import async_client, sync_client
from app.core.status import JobStatus
from app.core.stream_hub import StreamHub
from model.preview import LatentRGB
from tests.service_support import SIGNING_KEY
from tests.unit.test_jobstore import record
from worker.preview import PreviewHook, webp_strip

FACTORS = LatentRGB(((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.5, 0.5, 0.5)), (0.0, 0.0, 0.0))


@pytest.fixture
def settings(redis_url: str, tmp_path: Any) -> Settings:
    return Settings(redis_url=redis_url, data_dir=tmp_path, signing_key=SIGNING_KEY, preview_every_s=1.0)


def _running_job(settings: Settings) -> tuple[JobStore, str, str]:
    async def create() -> str:
        r = async_client(settings)
        rec = await AsyncJobStore(r, retention_s=60).create(record(f"video_{time.monotonic_ns()}"))
        await r.aclose()
        return rec.id

    job_id = asyncio.run(create())
    store = JobStore(sync_client(settings), retention_s=60)
    rec = store.get(job_id)
    assert rec is not None
    rec = store.transition(rec, JobStatus.IN_PROGRESS, {"attempts": 1, "attempt_token": "tok"}, fence=None)
    return store, job_id, "tok"


def _decode(url: str) -> Image.Image:
    img = Image.open(io.BytesIO(image_bytes(url)))
    assert img.format == "WEBP"
    return img


def test_strip_packs_frames_side_by_side_and_shrinks_to_fit() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 96, 128, 3), dtype=np.uint8)  # noise: the worst case for WebP
    url, k, w, h = webp_strip(frames, max_bytes=1_000_000)
    assert (k, w, h) == (4, 512, 96) and _decode(url).size == (512, 96)
    small, k2, w2, _ = webp_strip(frames, max_bytes=12_000)
    assert len(small) <= 12_000 and k2 < 4 and w2 == 128 * k2 and _decode(small).size == (w2, 96)
    with pytest.raises(ValueError):
        webp_strip(frames, max_bytes=100)


def test_hook_throttles_publishes_and_keeps_the_latest(settings: Settings) -> None:
    store, job_id, token = _running_job(settings)
    now = [100.0]
    pub = PreviewPublisher(store.r, retention_s=60)
    hook = PreviewHook(settings, pub, job_id, FACTORS, token, clock=lambda: now[0])
    computed: list[int] = []

    def x0(step: int) -> Any:
        def make() -> torch.Tensor:
            computed.append(step)
            return torch.full((1, 4, 3, 4, 4), step / 10)

        return make

    for step in range(1, 6):  # steps 1..5 of 6 within 0.4 s: only step 1 is due
        hook(step, 6, x0(step))
        now[0] += 0.1
    now[0] += 1.0
    hook(6, 6, x0(6))  # the last step never gets a preview (the video follows at once)
    assert computed == [1] and hook.published == 1
    hook2 = PreviewHook(settings, pub, job_id, FACTORS, token, clock=lambda: now[0])
    hook2(2, 6, x0(2))
    events = store.r.xrange(keys.events(job_id))
    previews = [f for _, f in events if f["type"] == "video.preview"]
    assert len(previews) == 2
    latest = asyncio.run(_latest(settings, job_id))
    assert latest is not None and latest["step"] == 2 and latest["total_steps"] == 6
    img = _decode(latest["image"])
    # three latent frames -> three frames side by side, each 128 px on its longest side
    assert img.size == (latest["width"], latest["height"]) == (3 * 128, 128) and latest["frames"] == 3
    assert store.r.ttl(keys.preview(job_id)) > 0


async def _latest(settings: Settings, job_id: str) -> dict[str, Any] | None:
    r = async_client(settings)
    try:
        return await latest_preview(r, job_id)
    finally:
        await r.aclose()


def test_preview_errors_never_reach_the_job_and_stale_attempts_write_nothing(settings: Settings) -> None:
    store, job_id, token = _running_job(settings)
    pub = PreviewPublisher(store.r, retention_s=60)
    broken = PreviewHook(settings, pub, job_id, FACTORS, token)
    broken(1, 5, lambda: torch.zeros(1, 7, 3, 4, 4))  # wrong channel count: raises inside, logged
    assert not broken.enabled and broken.published == 0
    stale = PreviewHook(settings, pub, job_id, FACTORS, "another-attempt")
    stale(1, 5, lambda: torch.zeros(1, 4, 3, 4, 4))
    assert not stale.enabled and stale.published == 0
    assert pub.publish(job_id, {"id": job_id}, "another-attempt") == -2
    assert not store.r.exists(keys.preview(job_id))
    assert not any(f["type"] == "video.preview" for _, f in store.r.xrange(keys.events(job_id)))
    assert pub.publish("video_missing", {"id": "video_missing"}) == -1


def test_backlog_keeps_only_the_newest_preview(settings: Settings) -> None:
    store, job_id, token = _running_job(settings)
    pub = PreviewPublisher(store.r, retention_s=60)
    assert store.progress(job_id, 1, 4) == 0
    assert pub.publish(job_id, {"id": job_id, "step": 1}, token) == 0
    assert store.progress(job_id, 2, 4) == 0
    assert pub.publish(job_id, {"id": job_id, "step": 2}, token) == 0

    async def read() -> list[tuple[str, Any]]:
        r = async_client(settings)
        hub = StreamHub(async_client(settings), block_ms=50)
        out = []
        async for ev in hub.events(r, job_id, after=None, idle_s=0.05):
            if ev is None:
                break
            out.append((ev.type, ev.json().get("step")))
        await hub.close()
        await r.aclose()
        return out

    assert asyncio.run(read()) == [
        ("video.queued", None),
        ("video.started", None),
        ("video.progress", 1),
        ("video.progress", 2),
        ("video.preview", 2),
    ]


class _SlowPublisher:
    def __init__(self) -> None:
        self.steps: list[int] = []

    def publish(self, job_id: str, data: dict[str, Any], fence: Any = False) -> int:
        time.sleep(0.05)  # a preview that costs 50 ms (a loaded machine)
        self.steps.append(data["step"])
        return 0


def test_previews_never_take_more_than_their_share_of_the_run(settings: Settings) -> None:
    eager = settings.model_copy(update={"preview_every_s": 0.0})  # "every step", if it were free
    now = [0.0]
    pub = _SlowPublisher()
    hook = PreviewHook(eager, pub, "video_x", FACTORS, clock=lambda: now[0])  # type: ignore[arg-type]
    for step in range(1, 41):  # 40 steps of 0.1 s: 4 s of denoising
        hook(step, 100, lambda: torch.zeros(1, 4, 3, 4, 4))
        now[0] += 0.1
    # >= 50 ms per preview at most 2 % of the time: >= 2.5 s apart, so steps 1 and 26 at most
    assert pub.steps[0] == 1 and len(pub.steps) <= 2, pub.steps
