"""`GET /v1/videos/{id}/events`: Server-Sent Events from the job's Redis stream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from app.api.deps import JobDep, RedisDep, SettingsDep
from app.core import keys
from app.core.apikeys import ApiKeyStore, parse_bearer
from app.core.events import read_events, valid_event_id

router = APIRouter(tags=["events"])


KEY_RECHECK_S = 2.0


@router.get(
    "/v1/videos/{video_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def video_events(
    rec: JobDep,
    request: Request,
    settings: SettingsDep,
    redis: RedisDep,
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
) -> StreamingResponse:
    """Every state transition and denoising step in order, ending with the terminal event.

    Each event: ``id`` (resume with ``Last-Event-ID``), ``event`` (video.queued, video.started,
    video.progress, video.completed, video.failed, video.cancelled) and JSON ``data``.
    """
    after = valid_event_id(last_event_id or request.query_params.get("last_event_id"))

    token = parse_bearer(request.headers.get("authorization")) if settings.auth_enabled else None
    key_checked = time.monotonic()

    async def revoked() -> bool:
        """Re-check the caller's key every couple of seconds: a revoked key's streams end."""
        nonlocal key_checked
        if token is None or time.monotonic() - key_checked < KEY_RECHECK_S:
            return False
        key_checked = time.monotonic()
        return await ApiKeyStore(redis).authenticate(token) is None

    async def stream() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        idle_since = time.monotonic()
        async for ev in read_events(redis, rec.id, after=after):
            if await revoked():
                return
            if ev is not None:
                idle_since = time.monotonic()
                yield ev.sse()
                continue
            if await request.is_disconnected() or not await redis.exists(keys.job(rec.id)):
                return
            if time.monotonic() - idle_since >= settings.sse_keepalive_s:
                idle_since = time.monotonic()
                yield ": keep-alive\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
