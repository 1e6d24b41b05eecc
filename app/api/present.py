"""Job record → public video object (with freshly minted signed URLs)."""

from __future__ import annotations

from fastapi import Request

from app.core.schemas import JobRecord, VideoPublic
from app.core.storage import Storage
from app.core.video_object import public_video


def to_public(
    rec: JobRecord, *, request: Request, storage: Storage, ttl_s: int, queue_position: int | None = None
) -> VideoPublic:
    return public_video(
        rec, storage=storage, ttl_s=ttl_s, base_url=str(request.base_url), queue_position=queue_position
    )
