"""`GET /v1/videos/{id}/preview`: the latest live preview of a job, owner-only.

The same picture as the newest `video.preview` event (`app.core.previews`): a WebP strip of a few
frames of the predicted video, side by side, earliest first. Kept while the job runs and for the
retention period after its last preview; a job with none (not started, previews off, a model
without latent-RGB factors) is a 404.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from app.api.deps import JobDep, RedisDep
from app.core.errors import NotFound
from app.core.previews import image_bytes, latest_preview

router = APIRouter(tags=["videos"])


@router.get(
    "/v1/videos/{video_id}/preview", response_class=Response, responses={200: {"content": {"image/webp": {}}}}
)
async def video_preview(rec: JobDep, redis: RedisDep) -> Response:
    """The newest preview image, with its step in `X-Preview-Step` / `X-Preview-Total-Steps`."""
    data = await latest_preview(redis, rec.id)
    if data is None:
        raise NotFound(f"video {rec.id} has no preview (yet)")
    headers = {
        "X-Preview-Step": str(data.get("step", 0)),
        "X-Preview-Total-Steps": str(data.get("total_steps", 0)),
        "Cache-Control": "no-store",
    }
    return Response(image_bytes(str(data.get("image", ""))), media_type="image/webp", headers=headers)
