"""Job events for Server-Sent Events, read from the job's Redis stream.

Each event is stored once (by a job-store transition or progress step) as a stream entry
``{type, data}``; the stream id is the SSE ``id``. A client resuming with ``Last-Event-ID`` gets
exactly the entries after that id (XRANGE, then XREAD BLOCK), so nothing is lost or repeated, except
the ``video.preview`` events of the backlog that a newer preview supersedes.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aredis

from app.core import keys
from app.core.previews import PREVIEW_EVENT
from app.core.status import TERMINAL_EVENTS

Entries = list[tuple[str, dict[str, str]]]
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


@dataclass(frozen=True)
class StreamEvent:
    id: str
    type: str
    data: str  # JSON text

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS

    def sse(self) -> str:
        return f"id: {self.id}\nevent: {self.type}\ndata: {self.data}\n\n"

    def json(self) -> dict[str, object]:
        out: dict[str, object] = json.loads(self.data)
        return out


def valid_event_id(value: str | None) -> str | None:
    """A usable ``Last-Event-ID`` or None (start from the beginning)."""
    return value.strip() if value and _STREAM_ID.match(value.strip()) else None


async def read_events(
    r: aredis.Redis, job_id: str, *, after: str | None, block_ms: int = 1000
) -> AsyncIterator[StreamEvent | None]:
    """Yield the job's events after ``after`` in order; yield None after each idle ``block_ms``
    (the caller sends a keep-alive and checks the client), and stop after a terminal event."""
    stream = keys.events(job_id)
    last = after or "0-0"
    # backlog first, exclusive of `last`
    backlog = cast(Entries, await r.xrange(stream, min=f"({last}" if after else "-", max="+"))
    # a late reader gets the newest preview of the backlog only: older ones are superseded
    newest_preview = max((i for i, (_, f) in enumerate(backlog) if f["type"] == PREVIEW_EVENT), default=-1)
    for i, (eid, fields) in enumerate(backlog):
        if fields["type"] == PREVIEW_EVENT and i != newest_preview:
            continue
        ev = StreamEvent(eid, fields["type"], fields["data"])
        yield ev
        last = eid
        if ev.terminal:
            return
    while True:
        res = cast(list[tuple[str, Entries]], await r.xread({stream: last}, block=block_ms, count=100))
        if not res:
            yield None
            continue
        for eid, fields in res[0][1]:
            ev = StreamEvent(eid, fields["type"], fields["data"])
            yield ev
            last = eid
            if ev.terminal:
                return
