"""Extensions, edits and remixes: find the source video, fit the params to it, create the job.

`extend`, `edit` and `remix` build the `Creation` of their route and hand it to `create_job`, the
create path of ``POST /v1/videos`` (limits, Idempotency-Key over the request as sent).

A source is given as an uploaded file (multipart field ``video``), as a reference to a completed
video of the caller (multipart ``video[id]=...``, the way the OpenAI SDK flattens it, or JSON
``{"video": {"id": ...}}``). Uploaded files are checked like images (`app.core.video_input`).
The source MP4 is copied under the new job's prefix (``videos/<id>/source.mp4``), so deleting the
source video later does not break a queued job.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.api.jobs import Adjust, Created, Creation, create_job
from app.api.state import AppState
from app.core.config import Settings
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.jobstore_async import AsyncJobStore
from app.core.long_video import segment_count
from app.core.schemas import JobRecord, ModelInfo, ResolvedParams, VideoCreate
from app.core.status import JobStatus
from app.core.storage import Storage, job_prefix
from app.core.video_input import probe_video

DEFAULT_STRENGTH = 0.6


@dataclass(frozen=True)
class Source:
    data: bytes  # the MP4 (or uploaded container) bytes
    frames: int
    width: int
    height: int
    video_id: str | None = None  # None: an uploaded file
    record: JobRecord | None = None


async def completed_source(store: AsyncJobStore, video_id: str, owner: str | None) -> JobRecord:
    rec = await store.get(video_id)
    if rec is None or (owner is not None and rec.owner != owner):
        raise NotFound(f"no video {video_id!r}")
    if rec.status is not JobStatus.COMPLETED or "video" not in rec.assets:
        raise Conflict(f"video {video_id} is {rec.status.value}; only a completed video can be a source")
    return rec


async def find_source(
    body: dict[str, Any],
    upload: bytes | None,
    *,
    owner: str | None,
    store: AsyncJobStore,
    storage: Storage,
    settings: Settings,
) -> Source:
    """Pop ``video`` from ``body`` and load the source it names (or the uploaded file)."""
    ref = body.pop("video", None)
    if upload is not None:
        if ref is not None:
            raise InvalidInput.field("video", "give a file or a reference, not both")
        info = await asyncio.to_thread(
            probe_video,
            upload,
            max_bytes=settings.max_body_bytes,
            max_pixels=settings.max_image_pixels,
            max_seconds=settings.max_video_seconds,
        )
        return Source(upload, info.frames, info.width, info.height)
    vid = ref.get("id") if isinstance(ref, dict) else None
    if not isinstance(vid, str) or not vid:
        raise InvalidInput.field("video", 'a video file, video[id]=<id> or JSON {"video": {"id": "<id>"}}')
    rec = await completed_source(store, vid, owner)
    data = await asyncio.to_thread(storage.get_bytes, rec.assets["video"])
    p = rec.params
    return Source(data, p.num_frames, p.width, p.height, video_id=vid, record=rec)


def _parse_seconds(value: Any) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise InvalidInput.field("seconds", f"not a number: {value!r}") from None
    if not math.isfinite(s) or s <= 0:
        raise InvalidInput.field("seconds", "must be a positive number of seconds")
    return s


def _parse_strength(value: Any) -> float:
    if value is None:
        return DEFAULT_STRENGTH
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise InvalidInput.field("strength", f"not a number: {value!r}") from None
    if not 0 < s <= 1:
        raise InvalidInput.field("strength", "must be in (0, 1]")
    return s


def _size_for(source: Source, params: ResolvedParams, info: ModelInfo) -> tuple[int, int]:
    """A referenced source keeps its size (it must be the model's); an upload is fitted to params."""
    if source.video_id is None:
        return params.width, params.height
    wh = (source.width, source.height)
    if wh not in [tuple(s) for s in info.sizes]:
        raise InvalidInput.field("video", f"the source is {wh[0]}x{wh[1]}, not a size of {info.model_id}")
    return wh


def _store_source(storage: Storage, source: Source, job_id: str) -> str:
    key = f"{job_prefix(job_id)}/source.mp4"
    storage.put_bytes(key, source.data, "video/mp4")
    return key


def extension_adjust(source: Source, seconds: Any, storage: Storage, settings: Settings) -> Adjust:
    added_s = _parse_seconds(seconds)

    async def adjust(
        req: VideoCreate, info: ModelInfo, params: ResolvedParams, job_id: str
    ) -> tuple[ResolvedParams, dict[str, Any]]:
        if info.image_input == "none":
            raise InvalidInput.field(
                "model", f"{info.model_id} has no image mode; extensions need I2V or TI2V"
            )
        width, height = _size_for(source, params, info)
        total = source.frames + max(1, round(added_s * params.fps))
        if total / params.fps > settings.max_video_seconds:
            raise InvalidInput.field(
                "seconds",
                f"source plus extension exceed {settings.max_video_seconds:g} s (WANSERVE_MAX_VIDEO_SECONDS)",
            )
        segments = segment_count(total, info.max_num_frames, source_frames=source.frames)
        update = dict(
            width=width, height=height, num_frames=total, segments=segments, source_frames=source.frames
        )
        key = await asyncio.to_thread(_store_source, storage, source, job_id)
        extra = {"operation": "extend", "source_video_id": source.video_id, "source_key": key}
        return params.model_copy(update=update), extra

    return adjust


def edit_adjust(source: Source, strength: Any, storage: Storage) -> Adjust:
    s = _parse_strength(strength)

    async def adjust(
        req: VideoCreate, info: ModelInfo, params: ResolvedParams, job_id: str
    ) -> tuple[ResolvedParams, dict[str, Any]]:
        width, height = _size_for(source, params, info)
        st = info.vae_stride[0]
        n = min(source.frames, info.max_num_frames)  # a longer source: its first clip is edited
        n = st * ((n - 1) // st) + 1
        if n < info.min_num_frames:
            raise InvalidInput.field(
                "video", f"the source has {source.frames} frames; at least {info.min_num_frames}"
            )
        update = dict(width=width, height=height, num_frames=n, segments=1, strength=s)
        key = await asyncio.to_thread(_store_source, storage, source, job_id)
        extra = {
            "operation": "edit",
            "source_video_id": source.video_id,
            "source_key": key,
            "total_steps": max(1, round(params.num_inference_steps * s)),
        }
        return params.model_copy(update=update), extra

    return adjust


def remix_adjust(src: JobRecord, storage: Storage) -> Adjust:
    def copy(key: str | None, job_id: str) -> str | None:
        if key is None:
            return None
        new = f"{job_prefix(job_id)}/source.mp4"
        storage.put_bytes(new, storage.get_bytes(key), "video/mp4")
        return new

    async def adjust(
        req: VideoCreate, info: ModelInfo, params: ResolvedParams, job_id: str
    ) -> tuple[ResolvedParams, dict[str, Any]]:
        p = src.params.model_copy(update={"has_image": params.has_image})
        extra: dict[str, Any] = {
            "remixed_from_video_id": src.id,
            "operation": src.operation if src.operation in ("extend", "edit") else "remix",
            "source_video_id": src.source_video_id if src.source_key else src.id,
            "source_key": await asyncio.to_thread(copy, src.source_key, job_id),
            "total_steps": src.total_steps,
        }
        return p, extra

    return adjust


async def _from_source(
    state: AppState,
    body: dict[str, Any],
    upload: bytes | None,
    option: str,
    make_adjust: Callable[[Source, Any], Adjust],
    *,
    owner: str | None,
    idempotency_key: str | None,
    priority_limit: str = "high",
) -> Created:
    """The source named by ``body`` (or uploaded); ``option`` (popped from ``body``) tunes the fit."""
    sent = (copy.deepcopy(body), upload)
    settings, store, storage = state.settings, state.store, state.storage
    source = await find_source(body, upload, owner=owner, store=store, storage=storage, settings=settings)
    if source.record is not None:
        body.setdefault("model", source.record.model)
    creation = Creation(body, adjust=make_adjust(source, body.pop(option, None)), sent=sent)
    return await create_job(
        state, creation, owner=owner, idempotency_key=idempotency_key, priority_limit=priority_limit
    )


async def extend(
    state: AppState,
    body: dict[str, Any],
    upload: bytes | None,
    *,
    owner: str | None,
    idempotency_key: str | None,
    priority_limit: str = "high",
) -> Created:
    """The source followed by new segment(s), each conditioned on the end of the one before."""

    def make(source: Source, seconds: Any) -> Adjust:
        return extension_adjust(source, seconds, state.storage, state.settings)

    return await _from_source(
        state,
        body,
        upload,
        "seconds",
        make,
        owner=owner,
        idempotency_key=idempotency_key,
        priority_limit=priority_limit,
    )


async def edit(
    state: AppState,
    body: dict[str, Any],
    upload: bytes | None,
    *,
    owner: str | None,
    idempotency_key: str | None,
    priority_limit: str = "high",
) -> Created:
    """Video-to-video: the source is encoded, noised to `strength` and denoised with the prompt."""

    def make(source: Source, strength: Any) -> Adjust:
        return edit_adjust(source, strength, state.storage)

    return await _from_source(
        state,
        body,
        upload,
        "strength",
        make,
        owner=owner,
        idempotency_key=idempotency_key,
        priority_limit=priority_limit,
    )


async def remix(
    state: AppState,
    video_id: str,
    sent: dict[str, Any],
    *,
    owner: str | None,
    idempotency_key: str | None,
    priority_limit: str = "high",
) -> Created:
    """The source's resolved parameters (size, duration, seed, model) with a new prompt."""
    src = await completed_source(state.store, video_id, owner)
    body = {"prompt": sent.get("prompt"), "model": src.model}
    for name in ("metadata", "priority", "cancel_after"):  # the request's own, not the source's
        if name in sent:
            body[name] = sent[name]
    # the source's input image (I2V / TI2V image mode) conditions the remix too
    storage = state.storage
    image = await asyncio.to_thread(storage.get_bytes, src.input_key) if src.input_key else None
    creation = Creation(body, image, remix_adjust(src, storage), sent=({**sent, "remix_of": src.id}, None))
    return await create_job(
        state, creation, owner=owner, idempotency_key=idempotency_key, priority_limit=priority_limit
    )
