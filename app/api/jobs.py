"""The job service the routes call: create, cancel, delete.

`create_job` is the one create path of ``POST /v1/videos``, ``/extensions``, ``/edits`` and
``/{id}/remix`` (the source routes differ only in the `Creation` they build, `app.api.video_sources`):
admission (limits, Idempotency-Key), resolution against the served model, the stored record, the
enqueued task. `cancel_job`: a queued job is cancelled at once and its task revoked; a running one gets
the cancel flag its worker checks every denoising step, so it is still pending (the route's 202).
`delete_job` removes the record and the stored files.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.api.forms import normalise_image
from app.api.security import admit_create
from app.api.state import AppState
from app.core.errors import Conflict, InvalidInput, QueueUnavailable, UnreadableRecord
from app.core.extenders import extend_route, extension_available
from app.core.jobstore_async import AsyncJobStore
from app.core.logjson import request_id_var
from app.core.long_video import apply_long_video
from app.core.lora_request import apply_lora_request
from app.core.output import apply_output, split_size
from app.core.params import resolve
from app.core.priority import check_allowed
from app.core.ratelimit import RateLimiter, SlotClaim
from app.core.registry import recent_model
from app.core.schemas import JobRecord, LoraRef, ModelInfo, ResolvedParams, VideoCreate
from app.core.status import JobStatus
from app.core.storage import Storage, job_key, job_prefix
from app.core.styles import style_job_fields

MAX_METADATA_CHARS = 4096
# (request, model, resolved params, job id) -> (params, extra JobRecord fields); may store inputs
Adjust = Callable[
    [VideoCreate, ModelInfo, ResolvedParams, str], Awaitable[tuple[ResolvedParams, dict[str, Any]]]
]


def new_job_id() -> str:
    return f"video_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Creation:
    """One create request: the `VideoCreate` fields, the input image, how a source fits the params."""

    body: dict[str, Any]
    image: bytes | None = None
    adjust: Adjust | None = None
    # what the Idempotency-Key fingerprint covers when it is not (body, image): a source route's
    # request as sent, with its source reference or file
    sent: tuple[dict[str, Any], bytes | None] | None = None


@dataclass(frozen=True)
class Created:
    record: JobRecord
    replayed: bool  # an Idempotency-Key seen before: the earlier job, nothing new was created
    queue_position: int | None = -1  # known when the job was just created; -1: read it when needed


async def create_job(
    state: AppState,
    creation: Creation,
    *,
    owner: str | None,
    idempotency_key: str | None,
    priority_limit: str = "high",
) -> Created:
    """Admit, create and enqueue one job, or replay the job an earlier request with the key made.

    ``priority_limit`` is the highest priority the caller may ask for (`app.api.scheduling`)."""
    sent_body, sent_image = creation.sent or (creation.body, creation.image)
    gate = await admit_create(
        state, sent_body, sent_image, owner=owner, idempotency_key=idempotency_key
    )  # webhook SSRF check, Idempotency-Key, limits
    if gate.replay is not None:
        return Created(gate.replay, replayed=True)
    try:
        rec, pos = await submit(
            state,
            creation.body,
            creation.image,
            owner=owner,
            admit=gate.admit,
            claim=gate.claim,
            adjust=creation.adjust,
            priority_limit=priority_limit,
        )
    except BaseException:
        await gate.abandon()
        raise
    await gate.complete(rec.id)
    return Created(rec, replayed=False, queue_position=pos)


async def submit(
    state: AppState,
    body: dict[str, Any],
    image: bytes | None,
    *,
    owner: str | None,
    admit: Callable[[str], Awaitable[None]] | None = None,
    claim: tuple[SlotClaim, RateLimiter] | None = None,
    adjust: Adjust | None = None,
    priority_limit: str = "high",
) -> tuple[JobRecord, int]:
    """-> (the new record, its queue position just after it was stored).

    ``admit(job_id)`` (quotas) enforces the active-job and queue limits before anything is stored;
    a job with nothing to store but its record has them enforced by the create script instead
    (``claim``, the same reservation, one round trip fewer);
    ``priority_limit`` is the highest priority the caller may ask for."""
    settings, redis, store, storage = state.settings, state.redis, state.store, state.storage
    req = VideoCreate.model_validate(body)
    check_allowed(req.priority, priority_limit)
    if req.metadata is not None and len(str(req.metadata)) > MAX_METADATA_CHARS:
        raise InvalidInput.field("metadata", f"larger than {MAX_METADATA_CHARS} characters")
    model_id = req.model or settings.model
    models = await state.served.get(model_id)
    if model_id in models:
        info, workers = models[model_id]
    else:
        recent = await recent_model(redis, model_id, settings.model_grace_s)
        if recent is None:
            served = ", ".join(sorted(models)) or "none (no worker is running)"
            raise InvalidInput.field("model", f"model {model_id!r} is not served; served models: {served}")
        info, workers = recent, []
    styled = style_job_fields(
        req.prompt,
        req.style,
        prompt_extend=req.prompt_extend,
        language=req.prompt_extend_language,
        extend_available=await extension_available(redis, settings, workers),
        model_id=model_id,
    )
    loras: list[LoraRef] = []
    if req.loras:  # names checked against WANSERVE_LORA_DIR, sidecar defaults filled in
        req, loras = await asyncio.to_thread(apply_lora_request, req, model_id, settings)
    req, out_size = split_size(req, info)  # sizes above native are upscaled
    params = resolve(req, info, has_image=image is not None)
    params = apply_output(req, info, params, out_size)  # fps above native is interpolated
    params = apply_long_video(req, info, params, max_video_seconds=settings.max_video_seconds)
    if loras:
        params = params.model_copy(update={"loras": loras})
    job_id = new_job_id()
    in_script = claim if image is None and adjust is None else None
    if admit is not None and in_script is None:
        await admit(job_id)
    input_key = None
    if image is not None:
        png = await asyncio.to_thread(normalise_image, image, settings.max_image_pixels)
        input_key = job_key(job_id, "input")
        await asyncio.to_thread(storage.put_bytes, input_key, png, "image/png")
    extra: dict[str, Any] = {}
    if adjust is not None:  # extensions, edits and remixes fit params to their source
        params, extra = await adjust(req, info, params, job_id)
    created_at = time.time()
    deadline_at = None if req.cancel_after is None else created_at + req.cancel_after
    rec = JobRecord(
        id=job_id,
        status=JobStatus.QUEUED,
        model=model_id,
        prompt=req.prompt,
        params=params,
        metadata=req.metadata,
        created_at=created_at,
        priority=req.priority,
        cancel_after=req.cancel_after,
        deadline_at=deadline_at,
        total_steps=extra.pop("total_steps", params.num_inference_steps * params.segments),
        input_key=input_key,
        owner=owner,
        webhook_url=req.webhook_url,
        webhook_events=list(req.webhook_events) if isinstance(req.webhook_events, list) else None,
        **styled,
        request_id=request_id_var.get(),
        **extra,
    )
    route = extend_route(rec.prompt_extend, settings)
    push = state.queue.push(job_id, model_id, priority=rec.priority, **route)
    pos = await store.create_ranked(rec, in_script, push)
    if push is not None:
        return rec, pos  # queued by the create script itself
    try:
        await state.queue.enqueue(job_id, model_id, priority=rec.priority, **route)
    except QueueUnavailable:
        await _undo(rec, store, storage)
        raise
    return rec, pos


async def _undo(rec: JobRecord, store: AsyncJobStore, storage: Storage) -> None:
    try:
        await store.delete(rec)
    finally:
        await asyncio.to_thread(storage.delete_prefix, job_prefix(rec.id))


async def cancel_job(state: AppState, rec: JobRecord) -> JobRecord:
    """-> the record after the call: ``cancelled``, or still pending with the cancel requested.

    Conflict (409) when the job already finished, before or during the call."""
    if rec.status.is_terminal:
        raise Conflict(f"video {rec.id} is already {rec.status.value}; nothing to cancel")
    new = await state.store.cancel(rec)
    if new.status is JobStatus.CANCELLED and rec.status is JobStatus.QUEUED:
        await state.queue.revoke(rec.id)  # best effort: the worker skips a cancelled record anyway
    if not new.status.is_pending and new.status is not JobStatus.CANCELLED:
        raise Conflict(f"video {rec.id} is already {new.status.value}; nothing to cancel")
    return new


async def delete_job(state: AppState, rec: JobRecord | UnreadableRecord) -> str:
    """Cancels a pending job (a running worker sees its record gone), then removes its files.

    A record that cannot be read any more is purged by its index facts alone."""
    if isinstance(rec, UnreadableRecord):
        await state.store.purge(rec.job_id, owner=rec.owner, model=rec.model)
        job_id = rec.job_id
    else:
        await state.store.delete(rec)
        job_id = rec.id
    await asyncio.to_thread(state.storage.delete_prefix, job_prefix(job_id))
    return job_id
