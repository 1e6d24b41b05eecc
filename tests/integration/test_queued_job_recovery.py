"""Queued jobs that never reached the broker are re-published (or failed after max_attempts); a job
waiting its turn in the broker is never published twice; the job indexes are pruned on a schedule.
Real redis-server, real gateway (its reaper round does the sweep), real worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from app.core import keys
from app.core.jobstore import decode_record
from app.core.jobstore_async import AsyncJobStore
from app.core.queued_sweep import republished
from app.core.status import JobStatus
from tests.reliability_support import Stack, open_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = open_stack(tmp_path_factory.mktemp("queued-sweep"), queued_recover_s=2.0, reaper_interval_s=0.3)
    s.worker(debug_step_delay_s=0.4)
    yield s
    s.close()


def _orphan(stack: Stack, template_id: str, *, attempts: int = 0) -> str:
    """A queued record stored like `store.create` does, but never published (the gateway "died")."""

    async def run() -> str:
        r = Redis.from_url(stack.redis.url, decode_responses=True)
        try:
            rec = decode_record(await r.hgetall(keys.job(template_id)))
            assert rec is not None
            orphan = rec.model_copy(
                update={
                    "id": f"video_orphan{time.monotonic_ns()}",
                    "status": JobStatus.QUEUED,
                    "created_at": time.time() - 5,
                    "started_at": None,
                    "completed_at": None,
                    "expires_at": None,
                    "attempts": attempts,
                    "assets": {},
                    "worker_id": None,
                    "attempt_token": None,
                    "progress": 0,
                    "step": 0,
                }
            )
            await AsyncJobStore(r, retention_s=3600).create(orphan)
            return orphan.id
        finally:
            await r.aclose()

    return asyncio.run(run())


def test_orphan_queued_job_is_republished_and_completes(stack: Stack) -> None:
    template = stack.submit(num_inference_steps=1)
    stack.wait(template, {"completed"})
    vid = _orphan(stack, template)
    assert stack.get(vid)["status"] == "queued"
    done = stack.wait(vid, {"completed", "failed"}, timeout=60)
    assert done["status"] == "completed", done
    assert stack.redis.client().hget(republished(vid), "n") == "1"


def test_orphan_past_max_attempts_fails(stack: Stack) -> None:
    template = stack.submit(num_inference_steps=1)
    stack.wait(template, {"completed"})
    vid = _orphan(stack, template, attempts=3)  # max_attempts (3) deliveries already counted
    failed = stack.wait(vid, {"failed", "completed"}, timeout=30)
    assert failed["status"] == "failed" and failed["error"]["code"] == "worker_lost", failed


def test_job_waiting_in_the_broker_is_not_published_twice(stack: Stack) -> None:
    busy = stack.submit(num_inference_steps=20)  # ~8 s on the one worker
    waiting = stack.submit(num_inference_steps=1)
    time.sleep(5)  # well past queued_recover_s while its message waits in the broker's list
    assert stack.get(waiting)["status"] == "queued"
    assert stack.wait(waiting, {"completed"}, timeout=60)["attempts"] == 1
    assert stack.get(busy)["status"] == "completed"
    assert not stack.redis.client().exists(republished(waiting))


def test_expired_entries_leave_the_global_index(stack: Stack) -> None:
    r = stack.redis.client()
    old_ms = (time.time() - 30 * 86400) * 1000
    r.zadd(keys.JOBS_INDEX, {"video_expired_long_ago": old_ms, "video_live_old": old_ms})
    r.hset(keys.job("video_live_old"), mapping={"id": '"video_live_old"', "status": "in_progress"})

    def pruned() -> bool:
        return r.zscore(keys.JOBS_INDEX, "video_expired_long_ago") is None

    deadline = time.monotonic() + 20
    while not pruned() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pruned()
    assert r.zscore(keys.JOBS_INDEX, "video_live_old") is not None  # its record is still there
    r.delete(keys.job("video_live_old"))
