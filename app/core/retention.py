"""Asset retention: stored videos, thumbnails and inputs are deleted once the job's ``expires_at`` passes.

A terminal transition adds the job id to the sorted set ``wanserve:asset_expiry`` scored by its
``expires_at`` (hooks in the worker and the gateway); `sweep` deletes the storage prefix of every
job whose time has come. Several sweepers may run (one per gateway): the ``ZREM`` that succeeds
claims the job, so each prefix is deleted once. ``DELETE /v1/videos/{id}`` removes assets at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis
import redis.asyncio as aredis

from app.core import keys
from app.core.storage import Storage, job_prefix

log = logging.getLogger(__name__)


def schedule_sync(r: redis.Redis, job_id: str, expires_at: float) -> None:
    r.zadd(keys.ASSET_EXPIRY, {job_id: expires_at})


async def schedule(r: aredis.Redis, job_id: str, expires_at: float) -> None:
    await r.zadd(keys.ASSET_EXPIRY, {job_id: expires_at})


async def sweep(r: aredis.Redis, storage: Storage, *, now: float | None = None, batch: int = 100) -> int:
    """Delete the assets of every job past retention; returns how many jobs were swept."""
    cutoff = time.time() if now is None else now
    due = await r.zrangebyscore(keys.ASSET_EXPIRY, "-inf", cutoff, start=0, num=batch)
    swept = 0
    for raw in due:
        job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        if not await r.zrem(keys.ASSET_EXPIRY, job_id):
            continue  # another sweeper claimed it
        try:
            await asyncio.to_thread(storage.delete_prefix, job_prefix(job_id))
            swept += 1
        except Exception as exc:  # retry on the next sweep
            log.warning("retention: deleting assets of %s failed: %r", job_id, exc)
            await r.zadd(keys.ASSET_EXPIRY, {job_id: cutoff})
    return swept


async def sweeper(r: aredis.Redis, storage: Storage, interval_s: float = 60.0) -> None:
    """Run `sweep` forever (a background task of the gateway)."""
    while True:
        try:
            n = await sweep(r, storage)
            if n:
                log.info("retention: deleted the assets of %d expired jobs", n)
        except Exception as exc:
            log.warning("retention sweep failed: %r", exc)
        await asyncio.sleep(interval_s)
