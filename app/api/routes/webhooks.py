"""Webhooks in the gateway: the delivery log route.

Messages are made by the job store's effects (`app.core.effects`) in whichever process changed
the job, sent to the ``webhooks`` Celery queue and delivered by `wan.deliver_webhook`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import JobDep, RedisDep
from app.core import webhooks as wh

router = APIRouter(tags=["webhooks"])


@router.get("/v1/videos/{video_id}/webhooks")
async def list_webhook_deliveries(rec: JobDep, redis: RedisDep) -> dict[str, Any]:
    """Every webhook message of this video with each delivery attempt (owner only)."""
    return {"object": "list", "data": await wh.list_deliveries(redis, rec.id)}
