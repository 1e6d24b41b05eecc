"""Job record → public video object (with freshly minted signed URLs) and its response headers."""

from __future__ import annotations

from fastapi import Request, Response

from app.api.state import AppState
from app.core.schemas import JobRecord, VideoPublic
from app.core.status import JobStatus
from app.core.storage import Storage
from app.core.video_object import public_video

REPLAYED_HEADER = "Idempotent-Replayed"
POLL_HEADER = "openai-poll-after-ms"


def to_public(
    rec: JobRecord, *, request: Request, storage: Storage, ttl_s: int, queue_position: int | None = None
) -> VideoPublic:
    # the base URL only prefixes signed links, which only a finished job has (building it from the
    # request is a tenth of a status poll's CPU)
    linked = rec.status is JobStatus.COMPLETED and bool(rec.assets)
    base_url = str(request.base_url) if linked else ""
    return public_video(rec, storage=storage, ttl_s=ttl_s, base_url=base_url, queue_position=queue_position)


_UNKNOWN = -1


async def video_answer(
    rec: JobRecord,
    state: AppState,
    request: Request,
    response: Response,
    *,
    replayed: bool = False,
    queue_position: int | None = _UNKNOWN,
) -> VideoPublic:
    """The video object of one job, with its queue position (read here unless the caller read it
    with the record), and the poll hint while it is pending."""
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    if rec.status.is_pending:
        response.headers[POLL_HEADER] = str(state.settings.poll_after_ms)
    pos = await state.store.queue_position(rec) if queue_position == _UNKNOWN else queue_position
    return to_public(
        rec, request=request, storage=state.storage, ttl_s=state.settings.url_ttl_s, queue_position=pos
    )
