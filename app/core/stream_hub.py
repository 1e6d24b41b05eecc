"""One shared reader per gateway process for the jobs' event streams, fanning out to open SSE streams.

A blocking ``XREAD`` holds its Redis connection for the whole block, so one reader per open stream
lets a few hundred streams take every pooled connection and starve the request path. Instead one
task reads every watched job's stream in a single ``XREAD BLOCK`` on its own connection and puts
each entry on the queue of every subscription past whose position it lies. The same task notices
deleted jobs (one pipelined ``EXISTS`` per round) and ends their subscriptions. An open stream
therefore costs no Redis connection at all; only its backlog read at open uses the shared pool.

If the reader loses Redis it ends every subscription: clients reconnect (SSE ``retry``) with
``Last-Event-ID`` and resume without gaps, as they would after any dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aredis

from app.core import keys
from app.core.events import Entries, StreamEvent
from app.core.previews import PREVIEW_EVENT

log = logging.getLogger(__name__)

END = None  # queue item: the job is gone or the reader failed; the stream ends


def _pos(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(eq=False)
class Subscription:
    job_id: str
    last: str
    queue: asyncio.Queue[StreamEvent | None] = field(default_factory=asyncio.Queue)

    def offer(self, ev: StreamEvent) -> None:
        if _pos(ev.id) > _pos(self.last):
            self.last = ev.id
            self.queue.put_nowait(ev)


class StreamHub:
    """``events(...)`` yields a job's events (backlog, then live); one reader task serves them all."""

    def __init__(self, reader: aredis.Redis, *, block_ms: int = 500, check_s: float = 1.0) -> None:
        self._r = reader  # a client of its own: the reader's blocked connection is never the pool's
        self._block_ms = block_ms
        self._check_s = check_s
        self._subs: dict[str, set[Subscription]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def open_subscriptions(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def _watch(self, job_id: str, last: str) -> Subscription:
        sub = Subscription(job_id, last)
        self._subs.setdefault(job_id, set()).add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="event-stream-reader")
        self._wake.set()
        return sub

    def _unwatch(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.job_id]

    async def events(
        self, r: aredis.Redis, job_id: str, *, after: str | None, idle_s: float = 1.0
    ) -> AsyncIterator[StreamEvent | None]:
        """The job's events after ``after`` in order, None after each idle ``idle_s`` (the caller
        sends a keep-alive and checks its client); ends after a terminal event or when the job is gone."""
        last = after or "0-0"
        backlog = cast(
            Entries, await r.xrange(keys.events(job_id), min=f"({last}" if after else "-", max="+")
        )
        # a late reader gets the newest preview of the backlog only: older ones are superseded
        newest_preview = max(
            (i for i, (_, f) in enumerate(backlog) if f["type"] == PREVIEW_EVENT), default=-1
        )
        for i, (eid, fields) in enumerate(backlog):
            last = eid
            if fields["type"] == PREVIEW_EVENT and i != newest_preview:
                continue
            ev = StreamEvent(eid, fields["type"], fields["data"])
            yield ev
            if ev.terminal:
                return
        sub = self._watch(job_id, last)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), idle_s)
                except TimeoutError:
                    yield None
                    continue
                if item is END:
                    return
                yield item
                if item.terminal:
                    return
        finally:
            self._unwatch(sub)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._r.aclose()

    async def _run(self) -> None:
        checked = time.monotonic()
        while True:
            if not self._subs:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._read_once()
                if time.monotonic() - checked >= self._check_s:
                    checked = time.monotonic()
                    await self._end_deleted()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: end the streams; their clients resume on reconnect
                log.warning("event stream reader: %r; ending %d streams", exc, self.open_subscriptions)
                self._end(list(self._subs))
                await asyncio.sleep(1.0)

    async def _read_once(self) -> None:
        streams: dict[Any, Any] = {}  # redis-py types keys and ids as a union
        for job_id, subs in self._subs.items():
            streams[keys.events(job_id)] = min((s.last for s in subs), key=_pos)
        res = cast(list[tuple[str, Entries]], await self._r.xread(streams, block=self._block_ms, count=100))
        prefix, suffix = keys.events("\0").split("\0")
        for stream, entries in res or []:
            job_id = stream[len(prefix) : len(stream) - len(suffix)]
            for eid, fields in entries:
                ev = StreamEvent(eid, fields["type"], fields["data"])
                for sub in list(self._subs.get(job_id, ())):
                    sub.offer(ev)

    async def _end_deleted(self) -> None:
        job_ids = list(self._subs)
        pipe = self._r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(keys.job(job_id))
        found = await pipe.execute()
        self._end([j for j, n in zip(job_ids, found, strict=True) if not n])

    def _end(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            for sub in self._subs.pop(job_id, set()):
                sub.queue.put_nowait(END)
