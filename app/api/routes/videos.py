"""`/v1/videos`: create, list, retrieve, cancel, delete (the OpenAI shape, extended).

Each route reads and checks its input, makes one call into the service (`app.api.jobs`,
the job store) and answers the public video object (`app.api.present`).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from app.api.deps import (
    JobDep,
    JobOrUnreadableDep,
    OwnerDep,
    StateDep,
    current_owner,
    get_job_ranked,
    get_state,
)
from app.api.forms import CREATE_BODY, read_create_body
from app.api.jobs import Creation, cancel_job, create_job, delete_job
from app.api.present import to_public, video_answer
from app.api.scheduling import merge_cancel_after_header, priority_limit
from app.core.errors import InvalidInput
from app.core.idempotency import HEADER as IDEMPOTENCY_HEADER
from app.core.schemas import VideoDeleted, VideoList, VideoPublic

router = APIRouter(prefix="/v1/videos", tags=["videos"])


# The two hot routes (create, status poll) resolve state, caller and job in their bodies, not as
# FastAPI dependencies: solving four dependencies cost more CPU per request than the Redis round
# trip (bench/gateway_profile.py); the checks and their order are those of the dependencies.


@router.post("", status_code=202, response_model=VideoPublic, openapi_extra=CREATE_BODY)
async def create_video(request: Request, response: Response) -> VideoPublic:
    state = get_state(request)
    owner = await current_owner(request)
    body, image = await read_create_body(request, state.settings)
    merge_cancel_after_header(request, body)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    limit = priority_limit(request, state.settings)
    created = await create_job(
        state, Creation(body, image), owner=owner, idempotency_key=key, priority_limit=limit
    )
    return await video_answer(
        created.record,
        state,
        request,
        response,
        replayed=created.replayed,
        queue_position=created.queue_position,
    )


@router.get("", response_model=VideoList)
async def list_videos(
    request: Request,
    state: StateDep,
    owner: OwnerDep,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
) -> VideoList:
    settings = state.settings
    limit = min(limit, settings.max_list_limit)
    if "" in request.query_params:
        raise InvalidInput.field("query", "a query parameter has an empty name")
    after = after or None  # `after=` (empty) is the first page, as the spec's plain string allows
    recs, has_more = await state.store.list(owner=owner, after=after, limit=limit, order=order)
    data = [to_public(r, request=request, storage=state.storage, ttl_s=settings.url_ttl_s) for r in recs]
    return VideoList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


@router.get("/{video_id}", response_model=VideoPublic)
async def get_video(video_id: str, request: Request, response: Response) -> VideoPublic:
    state = get_state(request)
    rec, pos = await get_job_ranked(video_id, state.store, await current_owner(request))
    return await video_answer(rec, state, request, response, queue_position=pos)


@router.post("/{video_id}/cancel", response_model=VideoPublic, responses={409: {}, 202: {}})
async def cancel_video(rec: JobDep, request: Request, response: Response, state: StateDep) -> VideoPublic:
    """Queued: cancelled at once (200). Running: stops at the next denoising step (202)."""
    new = await cancel_job(state, rec)
    if new.status.is_pending:
        response.status_code = 202
    return await video_answer(new, state, request, response)


@router.delete("/{video_id}", response_model=VideoDeleted)
async def delete_video(rec: JobOrUnreadableDep, state: StateDep) -> VideoDeleted:
    """Cancels a pending job, then removes its record and stored assets (also a record that
    cannot be read any more: deleting it is how its owner gets rid of it)."""
    return VideoDeleted(id=await delete_job(state, rec))
