"""Listing over expired and unreadable records, real redis-server."""

from __future__ import annotations

import asyncio
import time

from app.core import keys
from app.core.jobstore_async import AsyncJobStore
from app.core.redisconn import async_client
from tests.unit.test_jobstore import record, settings  # noqa: F401  (fixture)


def test_oldest_first_page_is_filled_past_expired_and_unreadable_records(settings) -> None:  # noqa: F811
    async def scenario() -> None:
        r = async_client(settings)
        owner = f"key_list_{time.monotonic_ns()}"
        store = AsyncJobStore(r, retention_s=60)
        ids = []
        for i in range(40):
            rec = record(f"video_list_{time.monotonic_ns()}_{i}", model="listing-only")
            rec.created_at, rec.owner = 1000.0 + i, owner
            ids.append((await store.create(rec)).id)
        for job_id in ids[:30]:  # the oldest 30 expired: their index entries stay behind
            await r.delete(keys.job(job_id))
        await r.hset(keys.job(ids[30]), "prompt", '"\\ud800"')  # stored before validation existed
        await r.hset(keys.job(ids[31]), "params", '"not params"')
        page, more = await store.list(owner=owner, after=None, limit=3, order="asc")
        assert [p.id for p in page] == ids[32:35] and more
        page, more = await store.list(owner=owner, after=ids[34], limit=10, order="asc")
        assert [p.id for p in page] == ids[35:] and not more
        newest, more = await store.list(owner=owner, after=None, limit=20, order="desc")
        assert [p.id for p in newest] == ids[32:][::-1] and not more
        assert await r.zcard(keys.owner_index(owner)) == 10  # expired entries pruned, unreadable kept
        await r.delete(*[keys.job(i) for i in ids], keys.owner_index(owner))
        await r.zrem(keys.JOBS_INDEX, *ids)
        await r.delete(keys.queued("listing-only"))
        await r.aclose()

    asyncio.run(scenario())
