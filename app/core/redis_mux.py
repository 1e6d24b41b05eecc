"""One pipelined Redis connection that every request of a gateway process shares, for the Lua
scripts on the hot routes (create, status poll).

redis-py's asyncio client spends ~85 us of CPU per command on its own machinery (pool condition
and lock, retry wrapper, per-read timeout, argument encoding); a create or a poll is one script
call, so that was a quarter of the route's CPU. Here a call packs its command with hiredis, writes
it and awaits a future; replies arrive in order on the one connection and resolve the futures
first-in first-out (~20 us per call, less under concurrency, where one read carries many
replies). Redis runs commands one at a time anyway, so one connection loses nothing.

Semantics kept from the pooled client: replies decoded as UTF-8 (``decode_responses``), error
replies raised as redis-py's exceptions (`ResponseError`, `NoScriptError`), a connection that
fails or breaks raises `ConnectionError` for every call in flight, and a reply that takes longer
than ``timeout_s`` fails the calls in flight with `TimeoutError` and drops the connection: all of
them `RedisError`, which the gateway answers with 503. The next call reconnects. A call is never
sent twice (a create that reached Redis before the connection broke must not be replayed).

`RedisMux.from_url` takes ``redis://`` and ``unix://`` URLs (user, password and database from the
URL); it returns None for anything else (TLS), where the pooled client keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, cast

import hiredis
from redis import exceptions as rx
from redis.asyncio.connection import parse_url

Arg = str | bytes | int | float


class ScriptRunner(Protocol):
    """A registered Lua script: redis-py's ``Script`` or `MuxScript`."""

    def __call__(
        self, keys: Sequence[Any] | None = None, args: Sequence[Any] | None = None
    ) -> Awaitable[Any]: ...


def _pack(args: tuple[Arg, ...]) -> bytes:
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # its stub takes 1-tuples
    return packed


class _Pipe(asyncio.Protocol):
    """The connection: writes commands, resolves one future per reply, in order."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.loop = asyncio.get_running_loop()
        self.reader = hiredis.Reader(encoding="utf-8", replyError=rx.ResponseError)
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.open = False
        self._watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports (the gateway's loop) are not subclasses of asyncio.Transport
        self.transport, self.open = cast(asyncio.Transport, transport), True

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        if not self.open or self.transport is None:
            raise rx.ConnectionError("connection to Redis closed")
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.transport.write(packed)
        self.pending.append((fut, self.loop.time()))
        if self._watch is None:
            self._watch = self.loop.call_later(self.timeout_s, self._check_age)
        return fut

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            fut, _ = self.pending.popleft()
            if not fut.done():  # a caller that gave up (cancelled) still had its reply read
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(rx.ConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}"))
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _check_age(self) -> None:
        """Timer: the oldest call in flight has waited ``timeout_s``: fail them all, drop the
        connection (the replies it would still get could no longer be matched to their calls)."""
        self._watch = None
        if not self.pending:
            return
        age = self.loop.time() - self.pending[0][1]
        if age < self.timeout_s:
            self._watch = self.loop.call_later(self.timeout_s - age, self._check_age)
            return
        self._fail(rx.TimeoutError(f"no reply from Redis within {self.timeout_s} s"))
        self.close()

    def _fail(self, exc: Exception) -> None:
        while self.pending:
            fut, _ = self.pending.popleft()
            if not fut.done():
                fut.set_exception(exc)

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()


class RedisMux:
    """``await mux.call("GET", "k")``; ``mux.script(lua)`` is called like redis-py's ``Script``."""

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int = 6379,
        path: str | None = None,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        timeout_s: float = 2.0,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.username, self.password, self.db = username, password, db
        self.timeout_s = timeout_s
        self._pipe: _Pipe | None = None
        self._connecting: asyncio.Lock | None = None

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float) -> RedisMux | None:
        """None for a URL this client does not speak (TLS): the caller keeps the pooled client."""
        if not url.startswith(("redis://", "unix://")):
            return None
        opts = parse_url(url)
        if "connection_class" in opts and "path" not in opts:
            return None
        return cls(
            host=opts.get("host", "localhost") if "path" not in opts else None,
            port=int(opts.get("port", 6379)),
            path=opts.get("path"),
            username=opts.get("username"),
            password=opts.get("password"),
            db=int(opts.get("db", 0)),
            timeout_s=timeout_s,
        )

    async def call(self, *args: Arg) -> Any:
        pipe = self._pipe
        if pipe is None or not pipe.open:
            pipe = await self._connect()
        reply = await pipe.send(_pack(args))
        if isinstance(reply, rx.ResponseError):
            if str(reply).startswith("NOSCRIPT"):
                raise rx.NoScriptError(str(reply))
            raise reply
        return reply

    def script(self, text: str) -> MuxScript:
        return MuxScript(self, text)

    async def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None

    async def _connect(self) -> _Pipe:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # one connect for all the calls that found no connection
            if self._pipe is not None and self._pipe.open:
                return self._pipe
            loop = asyncio.get_running_loop()
            pipe: _Pipe | None = None
            try:
                async with asyncio.timeout(self.timeout_s):
                    if self.path is not None:
                        _, pipe = await loop.create_unix_connection(lambda: _Pipe(self.timeout_s), self.path)
                    else:
                        _, pipe = await loop.create_connection(
                            lambda: _Pipe(self.timeout_s), self.host or "localhost", self.port
                        )
                    await self._hello(pipe)
            except (OSError, TimeoutError, rx.ConnectionError) as exc:
                if pipe is not None:
                    pipe.close()
                if isinstance(exc, rx.ConnectionError):
                    raise
                raise rx.ConnectionError(f"cannot connect to Redis: {exc!r}") from exc
            assert pipe is not None
            self._pipe = pipe
            return pipe

    async def _hello(self, pipe: _Pipe) -> None:
        """AUTH and SELECT, as the URL asks, before the connection serves any call."""
        hello: list[asyncio.Future[Any]] = []
        if self.password is not None:
            auth = (self.username, self.password) if self.username else (self.password,)
            hello.append(pipe.send(_pack(("AUTH", *auth))))
        if self.db:
            hello.append(pipe.send(_pack(("SELECT", self.db))))
        for reply in await asyncio.gather(*hello):
            if isinstance(reply, rx.ResponseError):
                raise rx.ConnectionError(f"Redis refused the connection set-up: {reply}")


class MuxScript:
    """A Lua script run by ``EVALSHA`` (by ``EVAL`` once, when the server's script cache lost it)."""

    def __init__(self, mux: RedisMux, text: str) -> None:
        self.mux, self.text = mux, text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[Any] | None = None, args: Sequence[Any] | None = None) -> Any:
        keys, args = keys or (), args or ()
        try:
            return await self.mux.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except rx.NoScriptError:
            return await self.mux.call("EVAL", self.text, len(keys), *keys, *args)
