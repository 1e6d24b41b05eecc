"""Job events for Server-Sent Events, read from the job's Redis stream.

Each event is stored once (by a job-store transition or progress step) as a stream entry
``{type, data}``; the stream id is the SSE ``id``. A client resuming with ``Last-Event-ID`` gets
exactly the entries after that id (its backlog by XRANGE, then live entries from the gateway's shared
reader, `app.core.stream_hub`), so nothing is lost or repeated, except the ``video.preview`` events
of the backlog that a newer preview supersedes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

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
