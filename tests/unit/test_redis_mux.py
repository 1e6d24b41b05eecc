"""`app.core.redis_mux` against a real redis-server: replies in order under concurrency, the same
decoded values as redis-py, scripts reloaded after a cache flush, error replies raised, database and
ACL user from the URL, and a lost, refused or silent connection failing its calls (never hanging),
after which the next call reconnects."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio as aredis
from redis import exceptions as rx

from app.core.redis_mux import RedisMux
from tests.service_support import free_port

DB = 9  # a database of its own; the tests that share the session's server use 0 and 7


def _url(redis_url: str, db: int = DB) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{db}"


def _mux(redis_url: str, timeout_s: float = 2.0) -> RedisMux:
    mux = RedisMux.from_url(_url(redis_url), timeout_s=timeout_s)
    assert mux is not None
    return mux


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # uvicorn runs the gateway on uvloop
def test_concurrent_calls_get_their_own_replies(redis_url: str, loop: str) -> None:
    async def scenario() -> None:
        mux = _mux(redis_url)
        words = [f"w{i}-é" for i in range(300)]
        assert await asyncio.gather(*(mux.call("ECHO", w) for w in words)) == words
        await mux.call("SET", "mux:n", 0)
        assert await asyncio.gather(*(mux.call("INCR", "mux:n") for _ in range(50))) == list(range(1, 51))
        await mux.close()

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(scenario())
    else:
        asyncio.run(scenario())


def test_script_replies_decode_as_redis_py_does_and_survive_a_cache_flush(redis_url: str) -> None:
    lua = """
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], 'a', ARGV[1], 'b', '2')
    return {redis.call('HGETALL', KEYS[1]), tonumber(ARGV[2]), redis.call('GET', 'mux:absent'), 'ok'}
    """

    async def scenario() -> None:
        mux = _mux(redis_url)
        pooled = aredis.Redis.from_url(_url(redis_url), decode_responses=True)
        args = ["čaj ✓", "7"]
        ours = await mux.script(lua)(keys=["mux:h"], args=args)
        theirs = await pooled.register_script(lua)(keys=["mux:h"], args=args)
        assert ours == theirs == [["a", "čaj ✓", "b", "2"], 7, None, "ok"]
        await pooled.script_flush()
        assert await mux.script(lua)(keys=["mux:h"], args=args) == ours  # EVAL once, then cached
        assert await pooled.script_exists(mux.script(lua).sha) == [True]
        await pooled.aclose()
        await mux.close()

    asyncio.run(scenario())


def test_error_replies_raise_and_leave_the_connection_usable(redis_url: str) -> None:
    async def scenario() -> None:
        mux = _mux(redis_url)
        await mux.call("SET", "mux:s", "text")
        with pytest.raises(rx.ResponseError, match="not an integer"):
            await mux.call("INCR", "mux:s")
        with pytest.raises(rx.ResponseError, match="boom"):
            await mux.script("return redis.error_reply('boom')")()
        assert await mux.call("GET", "mux:s") == "text"
        await mux.close()

    asyncio.run(scenario())


def test_database_and_acl_user_come_from_the_url(redis_url: str) -> None:
    admin = redis.Redis.from_url(_url(redis_url), decode_responses=True)
    admin.acl_setuser("muxuser", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"])
    base = redis_url.split("//", 1)[1].rsplit("/", 1)[0]

    async def scenario() -> None:
        mux = RedisMux.from_url(f"redis://muxuser:s3cret@{base}/{DB}", timeout_s=2)
        assert mux is not None
        await mux.call("SET", "mux:acl", "yes")
        assert admin.get("mux:acl") == "yes"  # the URL's database
        assert await mux.call("ACL", "WHOAMI") == "muxuser"
        await mux.close()
        wrong = RedisMux.from_url(f"redis://muxuser:nope@{base}/{DB}", timeout_s=2)
        assert wrong is not None
        with pytest.raises(rx.ConnectionError, match="refused the connection set-up"):
            await wrong.call("PING")

    try:
        asyncio.run(scenario())
    finally:
        admin.acl_deluser("muxuser")


def test_a_killed_connection_fails_its_calls_and_the_next_call_reconnects(redis_url: str) -> None:
    admin = redis.Redis.from_url(_url(redis_url), decode_responses=True)

    async def scenario() -> None:
        mux = _mux(redis_url, timeout_s=10)
        first = await mux.call("CLIENT", "ID")
        waiting = asyncio.ensure_future(mux.call("BLPOP", "mux:never", 5))
        await asyncio.sleep(0.2)
        admin.client_kill_filter(_id=first)
        with pytest.raises(rx.ConnectionError):
            await asyncio.wait_for(waiting, 3)
        assert await mux.call("CLIENT", "ID") != first  # a new connection
        await mux.close()

    asyncio.run(scenario())


def test_a_silent_server_times_out_instead_of_hanging(redis_url: str) -> None:
    async def scenario() -> None:
        mux = _mux(redis_url, timeout_s=0.3)
        t0 = time.monotonic()
        blocked = [
            asyncio.ensure_future(mux.call("BLPOP", "mux:never", 3)),
            asyncio.ensure_future(mux.call("PING")),
        ]
        for call in blocked:  # the PING queued behind the blocked call fails with it
            with pytest.raises(rx.TimeoutError):
                await call
        assert time.monotonic() - t0 < 2
        assert await mux.call("PING") == "PONG"
        await mux.close()

    asyncio.run(scenario())


def test_no_server_is_a_connection_error() -> None:
    async def scenario() -> None:
        mux = RedisMux.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=1)
        assert mux is not None
        with pytest.raises(rx.ConnectionError, match="cannot connect"):
            await mux.call("PING")

    asyncio.run(scenario())


def test_urls() -> None:
    assert RedisMux.from_url("rediss://cache.example:6380/0", timeout_s=1) is None  # TLS: the pool serves
    unix = RedisMux.from_url("unix:///run/redis.sock?db=3", timeout_s=1)
    assert unix is not None and unix.path == "/run/redis.sock" and unix.db == 3
    tcp = RedisMux.from_url("redis://u:p@cache:6390/2", timeout_s=1)
    assert tcp is not None and (tcp.host, tcp.port, tcp.username, tcp.password, tcp.db) == (
        "cache",
        6390,
        "u",
        "p",
        2,
    )
