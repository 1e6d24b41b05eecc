"""Live previews of a running job: ``video.preview`` events and the latest preview.

A worker publishes a small WebP (a horizontal strip of a few frames of the predicted video) every
so often while it denoises. One atomic script appends the event to the job's stream (so it flows
through ``GET /v1/videos/{id}/events``) and keeps it as the job's latest preview (``keys.preview``,
served by ``GET /v1/videos/{id}/preview``); a job that is no longer running, or is owned by a newer
attempt, gets nothing written. Previews are best effort: they never change a job's status.

Event data: ``{id, step, total_steps, progress, frames, width, height, image}`` where ``image`` is a
``data:image/webp;base64,...`` URL (kept small, ``Settings.preview_max_bytes``) and width/height
are the strip's size in pixels (``frames`` frames side by side).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any, cast

from app.core import keys

if TYPE_CHECKING:  # this module stays importable without redis (the preview benchmark on a GPU host)
    import redis
    import redis.asyncio as aredis

    from app.core.jobstore import Fence

PREVIEW_EVENT = "video.preview"
DATA_URL_PREFIX = "data:image/webp;base64,"

# KEYS: job, events, latest preview. ARGV: event data, ttl seconds, fence ("" = none).
# Returns -2 when a newer attempt owns the job, -1 when the job is gone or not running, else 0.
PUBLISH_LUA = """
local cur = redis.call('HGET', KEYS[1], 'status')
if cur and ARGV[3] ~= '' and (redis.call('HGET', KEYS[1], 'attempt_token') or 'null') ~= ARGV[3] then
  return -2
end
if cur ~= 'in_progress' then return -1 end
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'type', 'video.preview', 'data', ARGV[1])
return 0
"""


class PreviewPublisher:
    """The worker's side: publish one preview of a running job."""

    def __init__(self, client: redis.Redis, *, retention_s: int) -> None:
        self.r = client
        self.ttl_s = max(1, int(retention_s))
        self._publish = client.register_script(PUBLISH_LUA)

    def publish(self, job_id: str, data: dict[str, Any], fence: Fence = False) -> int:
        """Append the event and keep it as the latest; returns 0, -1 (not running) or -2 (stale)."""
        from app.core.jobstore import fence_arg

        ks = [keys.job(job_id), keys.events(job_id), keys.preview(job_id)]
        return int(self._publish(keys=ks, args=[json.dumps(data), self.ttl_s, fence_arg(fence)]))


def image_bytes(data_url: str) -> bytes:
    """The WebP inside a preview's data URL (ValueError when it is not one)."""
    if not data_url.startswith(DATA_URL_PREFIX):
        raise ValueError("not a WebP data URL")
    try:
        return base64.b64decode(data_url[len(DATA_URL_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64: {exc}") from None


async def latest_preview(r: aredis.Redis, job_id: str) -> dict[str, Any] | None:
    """The job's latest preview event data, or None when it has none (yet, or any more)."""
    raw = cast(str | None, await r.get(keys.preview(job_id)))
    if raw is None:
        return None
    out: dict[str, Any] = json.loads(raw)
    return out
