"""Leases and the reaper against a real redis-server: each loss is settled exactly once, a job
the worker finished first is left alone, a slow worker is fenced off, the attempt cap holds, and
the Prometheus counters follow the transitions."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from app.core import keys
from app.core.effects import build_async_job_store
from app.core.jobstore import JobStore
from app.core.jobstore_async import AsyncJobStore
from app.core.leases import Leases
from app.core.reaper import reap_once
from app.core.redisconn import async_client, sync_client
from app.core.schemas import JobRecord, ResolvedParams
from app.core.status import JobStatus
from app.core.storage import make_storage
from tests.service_support import SIGNING_KEY
from worker.leases import LeaseKeeper

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(redis_url, tmp_path):
    from app.core.config import Settings

    # a database of its own: the session's gateways reap expired leases of database 0 on their own
    # schedule, and one of them could requeue this module's jobs before the reapers under test do
    return Settings(redis_url=redis_url.rsplit("/", 1)[0] + "/9", data_dir=tmp_path, signing_key=SIGNING_KEY)


def record() -> JobRecord:
    params = ResolvedParams(
        width=32,
        height=32,
        num_frames=5,
        fps=16,
        num_inference_steps=4,
        guidance_scale=[5.0],
        shift=5.0,
        sampler="unipc",
        seed=1,
    )
    return JobRecord(
        id=f"video_{uuid.uuid4().hex}",
        status=JobStatus.QUEUED,
        model="lease-model",
        prompt="p",
        params=params,
        created_at=time.time(),
    )


def _start(settings, worker: str, attempts: int = 1) -> tuple[JobStore, JobRecord, Leases]:
    store = JobStore(sync_client(settings), retention_s=60)
    rec = record()

    async def create() -> None:
        r = async_client(settings)
        await AsyncJobStore(r, retention_s=60).create(rec)
        await r.aclose()

    asyncio.run(create())
    leases = Leases(store.r)
    leases.acquire(rec.id, worker, time.time() - 1)  # already expired: the worker went silent
    rec = store.transition(rec, JobStatus.IN_PROGRESS, {"attempts": attempts, "worker_id": worker})
    return store, rec, leases


def _no_webhooks(*args: object, **kwargs: object) -> None:
    raise AssertionError("these jobs have no webhook")


def _reap(settings, max_attempts: int = 3, reapers: int = 1) -> tuple[list[dict[str, str]], list[str]]:
    enqueued: list[str] = []

    async def main() -> list[dict[str, str]]:
        r = async_client(settings)
        store = build_async_job_store(settings, r, storage=make_storage(settings), send_task=_no_webhooks)

        async def enqueue(job_id: str, model: str, priority: str = "normal") -> None:
            enqueued.append(job_id)

        try:
            return list(
                await asyncio.gather(
                    *(reap_once(r, store, max_attempts=max_attempts, enqueue=enqueue) for _ in range(reapers))
                )
            )
        finally:
            await r.aclose()

    return asyncio.run(main()), enqueued


def test_concurrent_reapers_requeue_a_lost_job_once_and_fence_the_old_worker(settings) -> None:
    store, rec, leases = _start(settings, "w-dead")
    keeper = LeaseKeeper(store.r, "w-dead", ttl_s=5, interval_s=60)
    keeper.held.add(rec.id)
    rounds, enqueued = _reap(settings, reapers=4)
    assert enqueued == [rec.id]
    assert sum(1 for r in rounds if r.get(rec.id) == "requeued") == 1
    after = store.get(rec.id)
    assert after is not None and after.status is JobStatus.IN_PROGRESS and after.worker_id is None
    assert leases.owner(rec.id) is None
    # the "dead" worker was only slow: its next renewal finds the lease gone -> it abandons the job
    keeper.renew()
    assert keeper.is_lost(rec.id)
    assert _reap(settings)[1] == []  # nothing left to reap


def test_job_finished_before_the_claim_is_left_alone(settings) -> None:
    store, rec, _ = _start(settings, "w-fast")
    store.transition(rec, JobStatus.COMPLETED, {"progress": 100})
    rounds, enqueued = _reap(settings)
    assert enqueued == [] and rounds[0][rec.id] == "skipped"
    done = store.get(rec.id)
    assert done is not None and done.status is JobStatus.COMPLETED


def test_attempt_cap_fails_worker_lost_and_counts_it(settings) -> None:
    store, rec, _ = _start(settings, "w-dead", attempts=2)
    before = store.r.hget(keys.METRICS_JOBS, "failed|worker_lost")
    rounds, enqueued = _reap(settings, max_attempts=2)
    assert enqueued == [] and rounds[0][rec.id] == "failed"
    failed = store.get(rec.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.code == "worker_lost"
    assert failed.expires_at is not None
    assert int(store.r.hget(keys.METRICS_JOBS, "failed|worker_lost") or 0) == int(before or 0) + 1


def test_owner_claim_is_graceful_and_exclusive(settings) -> None:
    store, rec, leases = _start(settings, "w-term", attempts=1)
    assert leases.claim(rec.id, time.time(), expired=False, owner="someone-else") is None
    c = leases.claim(rec.id, time.time(), expired=False, owner="w-term", graceful=True)
    assert c is not None and c.pending and c.attempts == 0
    assert leases.claim(rec.id, time.time(), expired=False, owner="w-term") is None
    again = store.get(rec.id)
    assert again is not None and again.attempts == 0 and again.worker_id is None
