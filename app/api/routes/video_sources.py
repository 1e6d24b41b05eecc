"""`POST /v1/videos/extensions`, `POST /v1/videos/edits`, `POST /v1/videos/{id}/remix` (OpenAI's
routes for `client.videos.extend`, `.edit` and `.remix`): new videos made from a source video."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from fastapi import APIRouter, Request, Response

from app.api.deps import JobDep, JobStoreDep, OwnerDep, QueueDep, RedisDep, SettingsDep, StorageDep
from app.api.present import to_public
from app.api.scheduling import merge_cancel_after_header, priority_limit
from app.api.security import admit_create
from app.api.submit import Adjust, submit
from app.api.video_sources import (
    completed_source,
    edit_adjust,
    extension_adjust,
    find_source,
    read_source_body,
    remix_adjust,
)
from app.core.schemas import VideoPublic

router = APIRouter(prefix="/v1/videos", tags=["videos"])

_REF = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}


def _body(extra: dict[str, Any], required: list[str]) -> dict[str, Any]:
    props = {"prompt": {"type": "string"}, **extra}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {**props, "video": _REF},
                        "required": [*required, "video"],
                        "additionalProperties": True,
                    }
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            **props,
                            "video": {"type": "string", "format": "binary"},
                            "video[id]": {"type": "string"},
                        },
                        "required": required,
                        "additionalProperties": True,
                    }
                },
            },
        }
    }


_SECONDS = {"seconds": {"type": "string", "description": "length of the extension (added to the source)"}}
_STRENGTH = {
    "strength": {"type": "number", "description": "how far the source is noised, (0, 1]; default 0.6"}
}
_REMIX = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"prompt": {"type": "string"}},
                    "required": ["prompt"],
                }
            }
        },
    }
}


async def _create(
    request: Request,
    response: Response,
    body: dict[str, Any],
    adjust: Adjust,
    *,
    sent: tuple[dict[str, Any], bytes | None],
    image: bytes | None = None,
    settings: SettingsDep,
    store: JobStoreDep,
    queue: QueueDep,
    storage: StorageDep,
    redis: RedisDep,
    owner: OwnerDep,
) -> VideoPublic:
    """The create flow of `POST /v1/videos` (limits, Idempotency-Key) with a source adjustment."""
    # the Idempotency-Key fingerprint covers the request as sent (its source reference or file too)
    merge_cancel_after_header(request, body)
    gate = await admit_create(request, sent[0], sent[1], owner)
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
                adjust=adjust,
                priority_limit=priority_limit(request, settings),
            )
        except BaseException:
            await gate.abandon()
            raise
        await gate.complete(rec.id)
    response.headers["openai-poll-after-ms"] = str(settings.poll_after_ms)
    pos = await store.queue_position(rec)
    return to_public(rec, request=request, storage=storage, ttl_s=settings.url_ttl_s, queue_position=pos)


@router.post(
    "/extensions",
    status_code=202,
    response_model=VideoPublic,
    openapi_extra=_body(_SECONDS, ["prompt", "seconds"]),
)
async def extend_video(
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: JobStoreDep,
    queue: QueueDep,
    storage: StorageDep,
    redis: RedisDep,
    owner: OwnerDep,
) -> VideoPublic:
    """The source followed by new segment(s), each conditioned on the end of the one before."""
    body, upload = await read_source_body(request, settings.max_body_bytes)
    sent = (copy.deepcopy(body), upload)
    source = await find_source(body, upload, owner=owner, store=store, storage=storage, settings=settings)
    if source.record is not None:
        body.setdefault("model", source.record.model)
    adjust = extension_adjust(source, body.pop("seconds", None), storage, settings)
    return await _create(
        request, response, body, adjust, sent=sent,
        settings=settings, store=store, queue=queue, storage=storage, redis=redis, owner=owner,
    )  # fmt: skip


@router.post(
    "/edits", status_code=202, response_model=VideoPublic, openapi_extra=_body(_STRENGTH, ["prompt"])
)
async def edit_video(
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: JobStoreDep,
    queue: QueueDep,
    storage: StorageDep,
    redis: RedisDep,
    owner: OwnerDep,
) -> VideoPublic:
    """Video-to-video: the source is encoded, noised to `strength` and denoised with the prompt."""
    body, upload = await read_source_body(request, settings.max_body_bytes)
    sent = (copy.deepcopy(body), upload)
    source = await find_source(body, upload, owner=owner, store=store, storage=storage, settings=settings)
    if source.record is not None:
        body.setdefault("model", source.record.model)
    adjust = edit_adjust(source, body.pop("strength", None), storage)
    return await _create(
        request, response, body, adjust, sent=sent,
        settings=settings, store=store, queue=queue, storage=storage, redis=redis, owner=owner,
    )  # fmt: skip


@router.post("/{video_id}/remix", status_code=202, response_model=VideoPublic, openapi_extra=_REMIX)
async def remix_video(
    rec: JobDep,
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: JobStoreDep,
    queue: QueueDep,
    storage: StorageDep,
    redis: RedisDep,
    owner: OwnerDep,
) -> VideoPublic:
    """The source's resolved parameters (size, duration, seed, model) with a new prompt."""
    src = await completed_source(store, rec.id, owner)
    sent, _ = await read_source_body(request, settings.max_body_bytes)
    body = {"prompt": sent.get("prompt"), "model": src.model}
    if "metadata" in sent:
        body["metadata"] = sent["metadata"]
    # the source's input image (I2V / TI2V image mode) conditions the remix too
    image = await asyncio.to_thread(storage.get_bytes, src.input_key) if src.input_key else None
    adjust = remix_adjust(src, storage)
    return await _create(
        request, response, body, adjust, sent=({**sent, "remix_of": src.id}, None), image=image,
        settings=settings, store=store, queue=queue, storage=storage, redis=redis, owner=owner,
    )  # fmt: skip
