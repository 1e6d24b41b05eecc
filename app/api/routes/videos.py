"""`/v1/videos`: create, list, retrieve, cancel, delete (the OpenAI shape, extended)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from app.api.deps import JobDep, JobStoreDep, OwnerDep, QueueDep, RedisDep, SettingsDep, StorageDep
from app.api.forms import read_create_body
from app.api.present import to_public
from app.api.scheduling import merge_cancel_after_header, priority_limit
from app.api.security import admit_create
from app.api.submit import submit
from app.core.errors import Conflict, InvalidInput
from app.core.schemas import VideoCreate, VideoDeleted, VideoList, VideoPublic
from app.core.status import JobStatus
from app.core.storage import job_prefix

router = APIRouter(prefix="/v1/videos", tags=["videos"])

_CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": VideoCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "prompt": {"type": "string"},
                        "input_reference": {"type": "string", "format": "binary"},
                    },
                    "required": ["prompt"],
                    "additionalProperties": True,
                }
            },
        },
    }
}


def _poll_header(response: Response, status: JobStatus, settings: SettingsDep) -> None:
    if status.is_pending:
        response.headers["openai-poll-after-ms"] = str(settings.poll_after_ms)


@router.post("", status_code=202, response_model=VideoPublic, openapi_extra=_CREATE_BODY)
async def create_video(
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: JobStoreDep,
    queue: QueueDep,
    storage: StorageDep,
    redis: RedisDep,
    owner: OwnerDep,
) -> VideoPublic:
    body, image = await read_create_body(request, settings)
    merge_cancel_after_header(request, body)
    gate = await admit_create(request, body, image, owner)  # webhook SSRF check, Idempotency-Key, limits
    if gate.replay is not None:
        response.headers["Idempotent-Replayed"] = "true"
        rec = gate.replay
    else:
        try:
            rec = await submit(
                body,
                image,
                owner=owner,
                settings=settings,
                redis=redis,
                store=store,
                queue=queue,
                storage=storage,
                admit=gate.admit,
                priority_limit=priority_limit(request, settings),
            )
        except BaseException:
            await gate.abandon()
            raise
        await gate.complete(rec.id)
    _poll_header(response, rec.status, settings)
    pos = await store.queue_position(rec)
    return to_public(rec, request=request, storage=storage, ttl_s=settings.url_ttl_s, queue_position=pos)


@router.get("", response_model=VideoList)
async def list_videos(
    request: Request,
    settings: SettingsDep,
    store: JobStoreDep,
    storage: StorageDep,
    owner: OwnerDep,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
) -> VideoList:
    limit = min(limit, settings.max_list_limit)
    if "" in request.query_params:
        raise InvalidInput.field("query", "a query parameter has an empty name")
    after = after or None  # `after=` (empty) is the first page, as the spec's plain string allows
    recs, has_more = await store.list(owner=owner, after=after, limit=limit, order=order)
    data = [to_public(r, request=request, storage=storage, ttl_s=settings.url_ttl_s) for r in recs]
    return VideoList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


@router.get("/{video_id}", response_model=VideoPublic)
async def get_video(
    rec: JobDep,
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: JobStoreDep,
    storage: StorageDep,
) -> VideoPublic:
    _poll_header(response, rec.status, settings)
    pos = await store.queue_position(rec)
    return to_public(rec, request=request, storage=storage, ttl_s=settings.url_ttl_s, queue_position=pos)


@router.post("/{video_id}/cancel", response_model=VideoPublic, responses={409: {}, 202: {}})
async def cancel_video(
    rec: JobDep,
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: JobStoreDep,
    queue: QueueDep,
    storage: StorageDep,
) -> VideoPublic:
    """Queued: cancelled at once (200). Running: stops at the next denoising step (202)."""
    if rec.status.is_terminal:
        raise Conflict(f"video {rec.id} is already {rec.status.value}; nothing to cancel")
    new = await store.cancel(rec)
    if new.status is JobStatus.CANCELLED and rec.status is JobStatus.QUEUED:
        await queue.revoke(rec.id)
    if new.status.is_pending:
        response.status_code = 202
        _poll_header(response, new.status, settings)
    elif new.status is not JobStatus.CANCELLED:
        raise Conflict(f"video {rec.id} is already {new.status.value}; nothing to cancel")
    return to_public(new, request=request, storage=storage, ttl_s=settings.url_ttl_s)


@router.delete("/{video_id}", response_model=VideoDeleted)
async def delete_video(rec: JobDep, store: JobStoreDep, storage: StorageDep) -> VideoDeleted:
    """Cancels a pending job, then removes its record and stored assets."""
    await store.delete(rec)
    await asyncio.to_thread(storage.delete_prefix, job_prefix(rec.id))
    return VideoDeleted(id=rec.id)
