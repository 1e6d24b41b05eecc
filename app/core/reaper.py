"""The reaper: finds jobs whose worker died (its lease expired) and requeues or fails them.

Runs as a background task of every gateway; a Redis lock (``SET NX PX``) lets one gateway act per
round, and the lease claim itself is atomic (`app.core.leases`), so even two reapers never requeue
one loss twice. A worker renews its lease every heartbeat; a lease unrenewed for
``job_lease_ttl_s`` is expired, and the reaper looks every ``reaper_interval_s``: a dead worker's
job is back in the queue within ``job_lease_ttl_s + reaper_interval_s`` (default 30 + 5 s), not
after the broker's visibility timeout.

A claimed job with attempts left is re-published to its model's queue (the status stays
``in_progress``, ``worker_id`` is cleared; the next delivery counts another attempt); at
``max_attempts`` it is failed with ``worker_lost``. The dead worker's own broker message stays
unacknowledged until the visibility timeout; when it comes back the job is finished and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aredis

from app.core import keys
from app.core.deadlines import cancel_overdue
from app.core.jobstore import TransitionRejected
from app.core.jobstore_async import AsyncJobStore
from app.core.leases import AsyncLeases
from app.core.schemas import JobErrorInfo
from app.core.status import JobStatus

log = logging.getLogger(__name__)
LOCK = keys.PREFIX + "reaper:lock"
REQUEUES = keys.PREFIX + "metrics:reaper"  # hash: outcome -> count

Enqueue = Callable[..., Awaitable[None]]  # (job id, model id, *, priority=...)

# KEYS: lock. ARGV: token. Release only our own lock.
_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def settle(store: AsyncJobStore, job_id: str, *, max_attempts: int, enqueue: Enqueue) -> str:
    """After a claim: requeue the job, or fail it as ``worker_lost``; returns what happened."""
    rec = await store.get(job_id)
    if rec is None or rec.status.is_terminal:
        return "skipped"
    if rec.attempts >= max_attempts:
        err = JobErrorInfo(
            code="worker_lost",
            message=f"the job's worker was lost {rec.attempts} times (max_attempts={max_attempts})",
        )
        try:
            await store.transition(
                rec,
                JobStatus.FAILED,
                {"error": err},
                allowed=frozenset({JobStatus.QUEUED, JobStatus.IN_PROGRESS}),
            )
        except TransitionRejected:
            return "skipped"
        return "failed"
    await enqueue(job_id, rec.model, priority=rec.priority)
    return "requeued"


async def reap_once(
    r: aredis.Redis, store: AsyncJobStore, *, max_attempts: int, enqueue: Enqueue, retry_in_s: float = 5.0
) -> dict[str, str]:
    """One round: claim every expired lease and settle its job. Returns job id → outcome."""
    leases = AsyncLeases(r)
    now = time.time()
    out: dict[str, str] = {}
    for job_id in await leases.expired(now):
        claim = await leases.claim_expired(job_id, now)
        if claim is None:
            continue
        if not claim.pending:
            out[job_id] = "skipped"
            continue
        try:
            outcome = await settle(store, job_id, max_attempts=max_attempts, enqueue=enqueue)
        except Exception as exc:  # broker away: take the lease back and try again next round
            log.warning("reaper: could not settle %s: %r; retrying", job_id, exc)
            await leases.acquire(job_id, "reaper", time.time() + retry_in_s)
            outcome = "retry"
        log.warning(
            "reaper: job %s lost its worker %s (attempt %d): %s",
            job_id,
            claim.owner or "?",
            claim.attempts,
            outcome,
            extra={"job_id": job_id},
        )
        await r.hincrby(REQUEUES, outcome, 1)
        out[job_id] = outcome
    return out


async def reaper(
    r: aredis.Redis,
    store: AsyncJobStore,
    *,
    interval_s: float,
    max_attempts: int,
    enqueue: Enqueue,
) -> None:
    """Every ``interval_s``: take the reaper lock for one round, `reap_once`, cancel the queued jobs
    past their deadline (`app.core.deadlines`), release (a gateway task).

    The lock lapses by itself (30 s) if its gateway dies mid-round.
    """
    token = uuid.uuid4().hex
    unlock = r.register_script(_UNLOCK_LUA)
    while True:
        try:
            if await r.set(LOCK, token, nx=True, px=30_000):
                try:
                    await reap_once(
                        r, store, max_attempts=max_attempts, enqueue=enqueue, retry_in_s=interval_s
                    )
                    await cancel_overdue(r, store)
                finally:
                    await unlock(keys=[LOCK], args=[token])
        except Exception as exc:  # Redis away: try again next round
            log.warning("reaper round failed: %r", exc)
        await asyncio.sleep(interval_s)
