"""Job record → public video object, without FastAPI (shared by the gateway and the workers).

`app.api.present.to_public` wraps this for routes; the workers use it for webhook payloads.
Signed URLs are minted fresh on every call and never stored.
"""

from __future__ import annotations

import time

from app.core.output import output_frames
from app.core.params import seconds_str, size_str
from app.core.schemas import JobRecord, VideoPublic, VideoUrls
from app.core.status import JobStatus
from app.core.storage import Storage


def join_url(base_url: str, url: str) -> str:
    return base_url.rstrip("/") + url if url.startswith("/") else url


def public_video(
    rec: JobRecord, *, storage: Storage, ttl_s: int, base_url: str = "", queue_position: int | None = None
) -> VideoPublic:
    p = rec.params
    urls = None
    if rec.status is JobStatus.COMPLETED and rec.assets:
        links = {
            variant: join_url(base_url, storage.presigned_url(key, ttl_s=ttl_s))
            for variant, key in rec.assets.items()
        }
        urls = VideoUrls(
            video=links.get("video"), thumbnail=links.get("thumbnail"), expires_at=int(time.time()) + ttl_s
        )
    return VideoPublic(
        id=rec.id,
        model=rec.model,
        status=rec.status,
        progress=rec.progress,
        created_at=int(rec.created_at),
        completed_at=int(rec.completed_at) if rec.completed_at else None,
        expires_at=int(rec.expires_at) if rec.expires_at else None,
        size=size_str(p.output_width or p.width, p.output_height or p.height),
        seconds=seconds_str(output_frames(p), p.output_fps or p.fps),
        prompt=rec.prompt,
        error=rec.error,
        remixed_from_video_id=rec.remixed_from_video_id,
        queue_position=queue_position,
        step=rec.step,
        total_steps=rec.total_steps,
        started_at=int(rec.started_at) if rec.started_at else None,
        timings=rec.timings,
        seed=p.seed,
        parameters=p,
        urls=urls,
        metadata=rec.metadata,
        attempts=rec.attempts,
        worker_id=rec.worker_id,
        cancel_requested=rec.cancel_requested,
        revised_prompt=rec.revised_prompt,
        style=rec.style,
        prompt_extension=rec.prompt_extension,
        operation=rec.operation,
        source_video_id=rec.source_video_id,
        priority=rec.priority,
        cancel_after=rec.cancel_after,
        deadline_at=int(rec.deadline_at) if rec.deadline_at else None,
        cancel_reason=rec.cancel_reason,
    )
