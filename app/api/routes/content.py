"""Asset bytes: `/v1/videos/{id}/content` and the signed local-file route `/v1/files/{key}`."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from app.api.deps import JobDep, SettingsDep, StorageDep
from app.core.errors import Conflict, Forbidden, NotFound
from app.core.status import JobStatus
from app.core.storage import LocalStorage, content_type_for
from app.core.video_object import join_url

router = APIRouter(tags=["content"])


@router.get(
    "/v1/videos/{video_id}/content",
    response_class=Response,
    responses={200: {"content": {"video/mp4": {}, "image/webp": {}}}, 302: {}, 409: {}},
)
async def get_content(
    rec: JobDep,
    request: Request,
    settings: SettingsDep,
    storage: StorageDep,
    variant: Literal["video", "thumbnail", "spritesheet"] = "video",
) -> Response:
    """The bytes (streamed, Content-Length, Range) or a redirect to the backend's signed URL."""
    if rec.status is not JobStatus.COMPLETED:
        raise Conflict(f"video {rec.id} is {rec.status.value}; content exists once it is completed")
    key = rec.assets.get(variant)
    if key is None:
        raise NotFound(f"video {rec.id} has no {variant}")
    path = storage.local_path(key)
    if path is None:
        return RedirectResponse(
            join_url(str(request.base_url), storage.presigned_url(key, ttl_s=settings.url_ttl_s)), 302
        )
    ext = path.suffix
    return FileResponse(path, media_type=content_type_for(key), filename=f"{rec.id}{ext}")


@router.get("/v1/files/{key:path}", response_class=Response, responses={200: {}, 403: {}})
async def get_signed_file(
    key: str, storage: StorageDep, expires: str = Query(""), sig: str = Query("")
) -> Response:
    """A local-storage object behind an HMAC-signed, expiring URL; tampered or expired → 403."""
    if not isinstance(storage, LocalStorage):
        raise NotFound("this storage backend serves its own URLs")
    storage.signer.verify(key, expires, sig)
    path = storage.local_path(key)
    if path is None:
        raise NotFound("object not found")
    if not path.is_relative_to(storage.root):
        raise Forbidden("bad key")
    return FileResponse(path, media_type=content_type_for(key))
