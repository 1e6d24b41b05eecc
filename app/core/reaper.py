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

The same locked round also does housekeeping, at most once per ``queued_recover_s / 4`` across gateways:
queued jobs without a broker message are re-published or failed (`app.core.queued_sweep`), and
index entries of expired records are pruned (`app.core.index_prune`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aredis

from app.core import keys
from app.core.deadlines import cancel_overdue
from app.core.index_prune import prune_indexes
from app.core.jobstore_async import AsyncJobStore
from app.core.leases import AsyncLeases
from app.core.lost import settle_lost_async
from app.core.queued_sweep import sweep_queued

log = logging.getLogger(__name__)

Enqueue = Callable[..., Awaitable[None]]  # (job id, model id, *, priority=...)

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


@dataclass(frozen=True)
class Housekeeping:
    broker: aredis.Redis  # where the Celery queues live (the job store's Redis unless configured apart)
    queued_recover_s: float  # a queued job with no broker message this long is re-published
    retention_s: float  # index entries older than this are checked for expired records

    @property
    def every_s(self) -> float:
        return self.queued_recover_s / 4


async def housekeeping_once(
    r: aredis.Redis, store: AsyncJobStore, hk: Housekeeping, *, max_attempts: int, enqueue: Enqueue
) -> None:
    """Queued jobs without a broker message, then index pruning; skipped if done recently."""
    if not await r.set(keys.REAPER_HOUSEKEEPING, "1", nx=True, px=int(hk.every_s * 1000)):
        return
    await sweep_queued(
        r, hk.broker, store, older_than_s=hk.queued_recover_s, max_attempts=max_attempts, enqueue=enqueue
    )
    removed = await prune_indexes(r, retention_s=hk.retention_s)
    if removed:
        log.info("pruned %d index entries of expired jobs", removed)


async def reaper(
    r: aredis.Redis,
    store: AsyncJobStore,
    *,
    interval_s: float,
    max_attempts: int,
    enqueue: Enqueue,
    housekeeping: Housekeeping | None = None,
) -> None:
    """Every ``interval_s``: take the reaper lock for one round, `reap_once`, cancel the queued jobs
    past their deadline (`app.core.deadlines`), the housekeeping;
    release (a gateway task). The lock lapses by itself (30 s) if its gateway dies mid-round.
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
                    await cancel_overdue(r, store)
                    if housekeeping is not None:
                        await housekeeping_once(
                            r, store, housekeeping, max_attempts=max_attempts, enqueue=enqueue
                        )
                finally:
                    await unlock(keys=[keys.REAPER_LOCK], args=[token])
        except Exception as exc:  # Redis away: try again next round
            log.warning("reaper round failed: %r", exc)
        await asyncio.sleep(interval_s)
