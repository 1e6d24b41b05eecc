"""Scheduled pruning of the job indexes: entries whose record has expired are removed.

Finished records expire (``retention_s``) but their entries in the global index and the owners'
indexes stay until a listing walks past them, and with auth on nobody lists the global index, so
it grew without bound. A record expires no earlier than ``retention_s`` after it was created, so
only entries older than that are looked at, oldest first, at most ``budget`` per index and round.
"""

from __future__ import annotations

import time
from typing import cast

import redis.asyncio as aredis

from app.core import keys
from app.core.apikeys import ApiKeyStore

BATCH = 500


async def prune_index(r: aredis.Redis, index: str, *, older_than_s: float, budget: int = 5000) -> int:
    """Remove the entries of ``index`` created over ``older_than_s`` ago whose record is gone."""
    cutoff_ms = (time.time() - older_than_s) * 1000
    offset = removed = looked = 0
    while looked < budget:
        ids = cast(list[str], await r.zrangebyscore(index, "-inf", cutoff_ms, start=offset, num=BATCH))
        if not ids:
            break
        async with r.pipeline(transaction=False) as p:
            for job_id in ids:
                p.exists(keys.job(job_id))
            found = await p.execute()
        gone = [j for j, n in zip(ids, found, strict=True) if not n]
        if gone:
            removed += int(await r.zrem(index, *gone))
        offset += len(ids) - len(gone)  # live entries stay; the next page starts after them
        looked += len(ids)
    return removed


async def prune_indexes(r: aredis.Redis, *, retention_s: float) -> int:
    """The global index and every API key's index; returns the number of entries removed."""
    indexes = [keys.JOBS_INDEX] + [keys.owner_index(k.id) for k in await ApiKeyStore(r).list()]
    return sum([await prune_index(r, index, older_than_s=retention_s) for index in indexes])
