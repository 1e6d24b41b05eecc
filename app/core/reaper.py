"""The reaper: finds jobs whose worker died (its lease expired) and requeues or fails them.

Runs as a background task of every gateway; a Redis lock (``SET NX PX``) lets one gateway act per
round, and the lease claim itself is atomic (`app.core.leases`), so even two reapers never requeue
one loss twice. A worker renews its lease every heartbeat; a lease unrenewed for
``job_lease_ttl_s`` is expired, and the reaper looks every ``reaper_interval_s``: a dead worker's
job is back in the queue within ``job_lease_ttl_s + reaper_interval_s`` (default 30 + 5 s), not
after the broker's visibility timeout.

A claimed job with attempts left is re-published to its model's queue (the status stays
``in_progress``, ``worker_id`` is cleared; the next delivery counts another attempt); at
``max_attempts`` it is failed with ``worker_lost`` (`app.core.lost`, the rule every settler uses).
The dead worker's own broker message stays unacknowledged until the visibility timeout; when it
comes back the job is finished and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aredis

from app.core import keys
from app.core.jobstore_async import AsyncJobStore
from app.core.leases import AsyncLeases
from app.core.lost import settle_lost_async

log = logging.getLogger(__name__)

Enqueue = Callable[[str, str], Awaitable[None]]

# KEYS: lock. ARGV: token. Release only our own lock.
_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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
            outcome = await settle_lost_async(store, job_id, max_attempts=max_attempts, requeue=enqueue)
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
        await r.hincrby(keys.METRICS_REAPER, outcome, 1)
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
    """Every ``interval_s``: take the reaper lock for one round, `reap_once`, release (a gateway task).

    The lock lapses by itself (30 s) if its gateway dies mid-round.
    """
    token = uuid.uuid4().hex
    unlock = r.register_script(_UNLOCK_LUA)
    while True:
        try:
            if await r.set(keys.REAPER_LOCK, token, nx=True, px=30_000):
                try:
                    await reap_once(
                        r, store, max_attempts=max_attempts, enqueue=enqueue, retry_in_s=interval_s
                    )
                finally:
                    await unlock(keys=[keys.REAPER_LOCK], args=[token])
        except Exception as exc:  # Redis away: try again next round
            log.warning("reaper round failed: %r", exc)
        await asyncio.sleep(interval_s)
