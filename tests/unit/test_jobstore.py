"""The Redis job store against a real redis-server: atomic transitions, events, hooks, listing."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.core import keys
from app.core.jobstore import JobEvent, JobStore, TransitionRejected
from app.core.jobstore_async import AsyncJobStore
from app.core.redisconn import async_client, sync_client
from app.core.schemas import JobErrorInfo, JobRecord, ResolvedParams
from app.core.status import JobStatus
from app.core.stream_hub import StreamHub
from tests.service_support import SIGNING_KEY


@pytest.fixture
def settings(redis_url, tmp_path):
    from app.core.config import Settings

    return Settings(redis_url=redis_url, data_dir=tmp_path, signing_key=SIGNING_KEY)


def record(job_id: str, model: str = "m") -> JobRecord:
    params = ResolvedParams(
        width=32,
        height=32,
        num_frames=5,
        fps=16,
        num_inference_steps=3,
        guidance_scale=[5.0],
        shift=5.0,
        sampler="unipc",
        seed=1,
    )
    return JobRecord(
        id=job_id, status=JobStatus.QUEUED, model=model, prompt="p", params=params, created_at=time.time()
    )


def test_lifecycle_events_hooks_and_rejections(settings) -> None:
    async def scenario() -> None:
        r = async_client(settings)
        astore = AsyncJobStore(r, retention_s=60)
        store = JobStore(sync_client(settings), retention_s=60)
        seen: list[JobEvent] = []
        store.add_transition_hook(seen.append)
        rec = await astore.create(record(f"video_{time.monotonic_ns()}"))
        assert await astore.queue_position(rec) == 1
        with pytest.raises(TransitionRejected):
            store.transition(rec, JobStatus.COMPLETED)  # queued -> completed is not allowed
        rec2 = store.transition(rec, JobStatus.IN_PROGRESS, {"attempts": 1, "worker_id": "w"})
        assert rec2.status is JobStatus.IN_PROGRESS and rec2.attempts == 1
        assert await astore.queue_position(rec2) is None
        assert [store.progress(rec.id, s, 3) for s in (1, 2)] == [0, 0]
        cancelled = await astore.cancel(rec2)  # running: flag only
        assert cancelled.status is JobStatus.IN_PROGRESS and cancelled.cancel_requested
        assert store.progress(rec.id, 3, 3) == 1
        done = store.transition(rec2, JobStatus.FAILED, {"error": JobErrorInfo(code="x", message="y")})
        assert done.error and done.error.code == "x" and done.expires_at and done.completed_at
        assert store.progress(rec.id, 3, 3) == -1  # no longer running
        assert not store.cancel_requested(rec.id)  # the flag goes with the terminal transition
        assert await r.ttl(keys.job(rec.id)) > 0
        assert [e.type for e in seen] == [
            "video.started",
            "video.progress",
            "video.progress",
            "video.progress",
            "video.failed",
        ]
        assert seen[-1].record is not None and seen[-1].previous is JobStatus.IN_PROGRESS
        hub = StreamHub(async_client(settings))
        events = [e async for e in hub.events(r, rec.id, after=None) if e is not None]
        assert [e.type for e in events] == [
            "video.queued",
            "video.started",
            "video.progress",
            "video.progress",
            "video.progress",
            "video.failed",
        ]
        resumed = [e async for e in hub.events(r, rec.id, after=events[1].id) if e is not None]
        assert [e.id for e in resumed] == [e.id for e in events[2:]]
        await hub.close()
        await r.aclose()

    asyncio.run(scenario())


def test_cancel_queued_and_list_and_delete(settings) -> None:
    async def scenario() -> None:
        r = async_client(settings)
        store = AsyncJobStore(r, retention_s=60)
        model = f"list{time.monotonic_ns()}"
        recs = [await store.create(record(f"video_{model}_{i}", model)) for i in range(3)]
        c = await store.cancel(recs[0])
        assert c.status is JobStatus.CANCELLED
        assert (await store.cancel(c)).status is JobStatus.CANCELLED  # unchanged
        assert await store.queue_position(recs[1]) == 1
        page, more = await store.list(owner=None, after=None, limit=2, order="desc")
        assert [p.id for p in page] == [recs[2].id, recs[1].id] and more
        page, _ = await store.list(owner=None, after=recs[1].id, limit=2, order="desc")
        assert page[0].id == recs[0].id
        await store.delete(recs[1])
        assert await store.get(recs[1].id) is None
        assert await store.queue_position(recs[2]) == 1
        await r.aclose()

    asyncio.run(scenario())
