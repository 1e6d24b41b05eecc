"""`GET /v1/videos/{id}/events`: Server-Sent Events from the job's Redis stream.

Open streams are capped per API key and per gateway (429 with ``Retry-After`` beyond either,
`app.core.stream_slots`), and read through the gateway's one shared reader
(`app.core.stream_hub`), so they hold no pooled Redis connection while they wait.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.api.deps import JobDep, OwnerDep, RedisDep, SettingsDep, get_state
from app.core.apikeys import parse_bearer
from app.core.events import valid_event_id

router = APIRouter(tags=["events"])


class _SlotResponse(StreamingResponse):
    """Gives the stream's slot back however the response ends: the terminal event, the client
    leaving, a revoked key, a deleted job or an error."""

    def __init__(
        self, content: AsyncIterator[str], release: Callable[[], Awaitable[None]], **kw: object
    ) -> None:
        super().__init__(content, **kw)  # type: ignore[arg-type]
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._release()


@router.get(
    "/v1/videos/{video_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 429: {}},
)
async def video_events(
    rec: JobDep,
    request: Request,
    settings: SettingsDep,
    redis: RedisDep,
    owner: OwnerDep,
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
) -> StreamingResponse:
    """Every state transition and denoising step in order, ending with the terminal event.

    Each event: ``id`` (resume with ``Last-Event-ID``), ``event`` (video.queued, video.started,
    video.progress, video.completed, video.failed, video.cancelled) and JSON ``data``.
    """
    after = valid_event_id(last_event_id or request.query_params.get("last_event_id"))
    token = parse_bearer(request.headers.get("authorization")) if settings.auth_enabled else None
    streams = get_state(request).streams

    async def stream() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        idle_since = time.monotonic()
        async for ev in streams.hub.events(redis, rec.id, after=after):
            if token is not None and await streams.keys.revoked(token):
                return  # a revoked key's streams end within a couple of seconds
            if ev is not None:
                idle_since = time.monotonic()
                yield ev.sse()
                continue
            if await request.is_disconnected():
                return
            if time.monotonic() - idle_since >= settings.sse_keepalive_s:
                idle_since = time.monotonic()
                yield ": keep-alive\n\n"

    slot = await streams.slots.acquire(owner)  # last: nothing after it may fail before the response

    async def release() -> None:
        await streams.slots.release(slot)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return _SlotResponse(stream(), release, media_type="text/event-stream", headers=headers)
