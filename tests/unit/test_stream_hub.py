"""The shared event-stream reader and the stream caps against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from app.core import keys
from app.core.errors import TooManyStreams
from app.core.redisconn import async_client
from app.core.stream_hub import StreamHub
from app.core.stream_slots import StreamSlots, slot_set
from tests.service_support import SIGNING_KEY


@pytest.fixture
def settings(redis_url: str, tmp_path: Any) -> Any:
    from app.core.config import Settings

    return Settings(redis_url=redis_url, data_dir=tmp_path, signing_key=SIGNING_KEY)


def test_one_reader_fans_out_to_many_streams(settings: Any) -> None:
    async def scenario() -> None:
        r = async_client(settings)
        hub = StreamHub(async_client(settings), block_ms=100, check_s=0.2)
        job_ids = [f"video_hub{time.monotonic_ns()}_{i}" for i in range(3)]
        for j in job_ids:
            await r.hset(keys.job(j), "id", j)
            await r.xadd(keys.events(j), {"type": "video.queued", "data": "{}"})

        async def collect(job_id: str) -> list[str]:
            return [e.type async for e in hub.events(r, job_id, after=None, idle_s=0.05) if e is not None]

        readers = [asyncio.create_task(collect(j)) for j in job_ids for _ in range(40)]
        await asyncio.sleep(0.5)
        assert hub.open_subscriptions == 120
        # 120 open streams, and the request pool still has every connection free
        assert len(r.connection_pool._in_use_connections) == 0  # type: ignore[attr-defined]
        for j in job_ids[:2]:
            await r.xadd(keys.events(j), {"type": "video.progress", "data": "{}"})
            await r.xadd(keys.events(j), {"type": "video.completed", "data": "{}"})
        await r.delete(keys.job(job_ids[2]))  # the third job is deleted: its streams end
        results = await asyncio.wait_for(asyncio.gather(*readers), 10)
        done = ["video.queued", "video.progress", "video.completed"]
        assert results[:80] == [done] * 80
        assert results[80:] == [["video.queued"]] * 40
        assert hub.open_subscriptions == 0
        await hub.close()
        await r.aclose()

    asyncio.run(scenario())


def test_per_key_cap_is_shared_and_lapses(settings: Any) -> None:
    async def scenario() -> None:
        r = async_client(settings)
        owner = f"key_{time.monotonic_ns()}"
        a = StreamSlots(r, per_key=2, total=10, ttl_s=1.0)  # two gateways sharing one Redis
        b = StreamSlots(r, per_key=2, total=10, ttl_s=1.0)
        s1 = await a.acquire(owner)
        await b.acquire(owner)
        with pytest.raises(TooManyStreams) as exc:
            await a.acquire(owner)
        assert exc.value.status == 429 and int(exc.value.headers["Retry-After"]) >= 1
        await a.release(s1)
        await a.release(s1)  # idempotent
        s3 = await a.acquire(owner)
        # gateway b "dies" (stops refreshing): its slot lapses; a's slot is kept alive by a's refresher
        await b.close()
        b._open.clear()
        await asyncio.sleep(1.5)
        assert await r.zscore(slot_set(owner), s3.member) is not None
        await a.acquire(owner)
        with pytest.raises(TooManyStreams):
            await a.acquire(owner)
        # the per-process cap needs no Redis
        c = StreamSlots(r, per_key=0, total=1)
        await c.acquire(None)
        with pytest.raises(TooManyStreams):
            await c.acquire(None)
        await a.close()
        await r.aclose()

    asyncio.run(scenario())
