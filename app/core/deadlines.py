"""Per-request deadlines: ``cancel_after`` (seconds) or Replicate's ``Cancel-After`` header.

Past its deadline a job is cancelled wherever it is, with ``cancel_reason`` in the record:

- still queued: the gateway's sweeper (`cancel_overdue`, run in the reaper's round) cancels it, so it
  never starts even while every worker is busy; a worker that picks up an overdue job cancels it
  instead of running it (the sweeper may not have looked yet);
- running: the worker's step callback compares the clock with ``deadline_at`` and stops at the next
  denoising step, like a client's cancel.

``keys.DEADLINES`` (zset: job id by deadline) holds only jobs that asked for one; an entry leaves when it
comes due, whatever became of its job.
"""

from __future__ import annotations

import logging
import time
from typing import cast

import redis.asyncio as aredis

from app.core import keys
from app.core.cancel_after import deadline_reason
from app.core.jobstore import TransitionRejected
from app.core.jobstore_async import AsyncJobStore
from app.core.status import JobStatus

log = logging.getLogger(__name__)


async def cancel_overdue(r: aredis.Redis, store: AsyncJobStore, now: float | None = None) -> list[str]:
    """Cancel every queued job whose deadline passed; returns their ids (running ones stop themselves)."""
    now = time.time() if now is None else now
    due = cast(list[str], await r.zrangebyscore(keys.DEADLINES, "-inf", now))
    cancelled: list[str] = []
    for job_id in due:
        rec = await store.get(job_id)
        if rec is not None and rec.status is JobStatus.QUEUED:
            fields = {"cancel_requested": True, "cancel_reason": deadline_reason(rec.cancel_after)}
            try:
                await store.transition(
                    rec, JobStatus.CANCELLED, fields, allowed=frozenset({JobStatus.QUEUED})
                )
                cancelled.append(job_id)
                log.info(
                    "job %s cancelled in the queue: its deadline passed", job_id, extra={"job_id": job_id}
                )
            except TransitionRejected:
                pass  # picked up meanwhile: the worker's step check takes over
    if due:
        await r.zrem(keys.DEADLINES, *due)
    return cancelled
