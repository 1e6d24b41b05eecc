"""API keys, rate limits and idempotency against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from app.core.apikeys import ApiKeyError, ApiKeyStore, hash_key, parse_bearer
from app.core.idempotency import (
    IdempotencyInProgress,
    IdempotencyKeyInvalid,
    IdempotencyMismatch,
    IdempotencyStore,
    fingerprint,
)
from app.core.ratelimit import RateLimiter, RateLimitExceeded, RateLimits
from tests.sec_support import redis_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def run(redis_url: str, fn: Any) -> Any:
    async def main() -> Any:
        r = Redis.from_url(redis_url)
        try:
            await r.flushdb()
            return await fn(r)
        finally:
            await r.aclose()

    return asyncio.run(main())


def test_keys_create_authenticate_revoke(redis_url: str) -> None:
    async def body(r: Redis) -> None:
        store = ApiKeyStore(r)
        key, token = await store.create("alice")
        assert token.startswith("wsk_") and len(token) > 40
        # only the hash is stored
        dump = [k async for k in r.scan_iter()]
        values = [await r.get(k) for k in dump if (await r.type(k)) == b"string"]
        assert all(
            token.encode() not in k and (v is None or token.encode() not in v) for k, v in zip(dump, values)
        )
        assert await r.exists(f"wanserve:apikey:{hash_key(token)}")
        who = await store.authenticate(token)
        assert who is not None and who.id == key.id and who.name == "alice"
        assert await store.authenticate(token + "x") is None
        assert await store.authenticate("garbage") is None
        with pytest.raises(ApiKeyError):
            await store.create("alice")
        with pytest.raises(ApiKeyError):
            await store.create("bad name!")
        _, token_b = await store.create("bob")
        assert [k.name for k in await store.list()] == ["alice", "bob"]
        assert await store.revoke("alice")
        assert not await store.revoke("alice")
        assert await store.authenticate(token) is None
        assert await store.authenticate(token_b) is not None
        assert [k.name for k in await store.list()] == ["bob"]
        key2, token2 = await store.create("alice")  # name reusable after revoke, new identity
        assert key2.id != key.id and token2 != token

    run(redis_url, body)


def test_parse_bearer() -> None:
    assert parse_bearer("Bearer abc") == "abc"
    assert parse_bearer("bearer   abc ") == "abc"
    assert parse_bearer("Basic abc") is None
    assert parse_bearer("Bearer") is None
    assert parse_bearer(None) is None


def test_request_rate_limit_with_headers(redis_url: str) -> None:
    async def body(r: Redis) -> None:
        rl = RateLimiter(r, RateLimits(requests_per_window=3, window_s=60))
        for i in range(3):
            d = await rl.hit("key_a")
            assert d.remaining == 2 - i
            assert d.headers["RateLimit-Policy"] == '"requests";q=3;w=60'
        with pytest.raises(RateLimitExceeded) as info:
            await rl.hit("key_a")
        exc = info.value
        assert exc.status == 429
        assert 1 <= int(exc.headers["Retry-After"]) <= 60
        assert exc.headers["RateLimit"].startswith('"requests";r=0;t=')
        assert exc.headers["X-RateLimit-Remaining"] == "0"
        # other keys are unaffected
        assert (await rl.hit("key_b")).remaining == 2

    run(redis_url, body)


def test_active_jobs_and_global_queue_cap(redis_url: str) -> None:
    async def body(r: Redis) -> None:
        rl = RateLimiter(r, RateLimits(max_active_jobs=2, max_queued_global=3, busy_retry_after_s=7))
        for j in ("j1", "j2", "j3", "j4", "j5"):
            await r.hset(f"wanserve:job:{j}", "status", "queued")
        await rl.reserve_job("a", "j1")
        await rl.reserve_job("a", "j2")
        await rl.reserve_job("a", "j2")  # re-reserving the same job is a no-op
        with pytest.raises(RateLimitExceeded) as info:
            await rl.reserve_job("a", "j3")
        assert info.value.decision.policy == "active" and info.value.headers["Retry-After"] == "7"
        await rl.reserve_job("b", "j4")
        with pytest.raises(RateLimitExceeded) as info:
            await rl.reserve_job("c", "j5")
        assert info.value.decision.policy == "queue"
        await rl.release_job("a", "j1")
        await rl.reserve_job("c", "j5")
        assert await rl.active_count("a") == 1
        # finished or deleted jobs free their slots without an explicit release
        await r.hset("wanserve:job:j2", "status", "completed")
        await r.delete("wanserve:job:j4")
        await rl.reserve_job("a", "j6")
        await rl.reserve_job("d", "j7", per_key=False)
        assert await rl.active_count("a") == 1

    run(redis_url, body)


def test_idempotency(redis_url: str) -> None:
    async def body(r: Redis) -> None:
        st = IdempotencyStore(r, ttl_s=100)
        fp1 = fingerprint({"prompt": "a cat", "seed": 1})
        fp2 = fingerprint({"prompt": "a dog", "seed": 1})
        assert fp1 == fingerprint({"seed": 1, "prompt": "a cat"})
        assert fingerprint({"p": 1}, b"img") != fingerprint({"p": 1}, b"img2")
        res = await st.begin("owner1", "key-123", fp1)
        assert res.existing_job_id is None
        with pytest.raises(IdempotencyInProgress):
            await st.begin("owner1", "key-123", fp1)
        await st.complete(res, "video_1")
        again = await st.begin("owner1", '"key-123"', fp1)  # sf-string form is the same key
        assert again.existing_job_id == "video_1"
        with pytest.raises(IdempotencyMismatch) as info:
            await st.begin("owner1", "key-123", fp2)
        assert info.value.status == 400
        other = await st.begin("owner2", "key-123", fp2)  # scoped per API key
        assert other.existing_job_id is None
        await st.abandon(other)
        assert (await st.begin("owner2", "key-123", fp1)).existing_job_id is None
        ttl = await r.ttl(res.redis_key)
        assert 0 < ttl <= 100
        for bad in ("", "a b", "x" * 256, "ключ"):
            with pytest.raises(IdempotencyKeyInvalid):
                await st.begin("owner1", bad, fp1)

    run(redis_url, body)
