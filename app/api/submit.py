"""Create a job: resolve against the served model, store the record, enqueue by task name."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aredis

from app.api.forms import normalise_image
from app.api.queue import JobQueue
from app.core.config import Settings
from app.core.errors import InvalidInput, QueueUnavailable
from app.core.extenders import extend_route, extension_available
from app.core.jobstore_async import AsyncJobStore
from app.core.logjson import request_id_var
from app.core.long_video import apply_long_video
from app.core.lora_request import apply_lora_request
from app.core.output import apply_output, split_size
from app.core.params import resolve
from app.core.priority import check_allowed
from app.core.registry import recent_model, served_models
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


async def submit(
    body: dict[str, Any],
    image: bytes | None,
    *,
    owner: str | None,
    settings: Settings,
    redis: aredis.Redis,
    store: AsyncJobStore,
    queue: JobQueue,
    storage: Storage,
    admit: Callable[[str], Awaitable[None]] | None = None,
    adjust: Adjust | None = None,
    priority_limit: str = "high",
) -> JobRecord:
    """``admit(job_id)`` (quotas) enforces the active-job and queue limits before anything is stored;
    ``priority_limit`` is the highest priority the caller may ask for."""
    req = VideoCreate.model_validate(body)
    check_allowed(req.priority, priority_limit)
    if req.metadata is not None and len(str(req.metadata)) > MAX_METADATA_CHARS:
        raise InvalidInput.field("metadata", f"larger than {MAX_METADATA_CHARS} characters")
    model_id = req.model or settings.model
    models = await served_models(redis, settings.worker_ttl_s)
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
    if req.loras:  # issue 14: names checked against WANSERVE_LORA_DIR, sidecar defaults filled in
        req, loras = await asyncio.to_thread(apply_lora_request, req, model_id, settings)
    req, out_size = split_size(req, info)  # issue 17: sizes above native are upscaled
    params = resolve(req, info, has_image=image is not None)
    params = apply_output(req, info, params, out_size)  # issue 17: fps above native is interpolated
    params = apply_long_video(req, info, params, max_video_seconds=settings.max_video_seconds)
    if loras:
        params = params.model_copy(update={"loras": loras})
    job_id = new_job_id()
    if admit is not None:
        await admit(job_id)
    input_key = None
    if image is not None:
        png = await asyncio.to_thread(normalise_image, image, settings.max_image_pixels)
        input_key = job_key(job_id, "input")
        await asyncio.to_thread(storage.put_bytes, input_key, png, "image/png")
    extra: dict[str, Any] = {}
    if adjust is not None:  # issue 17: extensions, edits and remixes fit params to their source
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
    await store.create(rec)
    try:
        route = extend_route(rec.prompt_extend, settings)
        await queue.enqueue(job_id, model_id, priority=rec.priority, **route)
    except QueueUnavailable:
        await _undo(rec, store, storage)
        raise
    return rec


async def _undo(rec: JobRecord, store: AsyncJobStore, storage: Storage) -> None:
    try:
        await store.delete(rec)
    finally:
        await asyncio.to_thread(storage.delete_prefix, job_prefix(rec.id))
