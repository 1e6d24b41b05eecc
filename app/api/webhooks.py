"""Webhooks in the gateway: the delivery log route and the job-store hook for gateway-side events.

Transitions made by the gateway (a queued job cancelled, or failed) announce their webhook here;
the worker's transitions are announced by `worker.webhooks.install_worker_hooks`. Either way the
message goes to the ``webhooks`` Celery queue by task name and is delivered by `wan.deliver_webhook`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter

from app.api.deps import JobDep, RedisDep
from app.api.queue import JobQueue
from app.core import retention
from app.core import webhooks as wh
from app.core.config import Settings
from app.core.jobstore import JobEvent
from app.core.jobstore_async import AsyncJobStore
from app.core.storage import Storage
from app.core.video_object import public_video

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])


@router.get("/v1/videos/{video_id}/webhooks")
async def list_webhook_deliveries(rec: JobDep, redis: RedisDep) -> dict[str, Any]:
    """Every webhook message of this video with each delivery attempt (owner only)."""
    return {"object": "list", "data": await wh.list_deliveries(redis, rec.id)}


def base_url(settings: Settings) -> str:
    return settings.public_url or f"http://{settings.host}:{settings.port}"


def install_gateway_hooks(
    store: AsyncJobStore, queue: JobQueue, storage: Storage, settings: Settings
) -> asyncio.Task[None]:
    """Register the webhook + retention hook; start and return the retention sweeper task."""

    async def hook(ev: JobEvent) -> None:
        name = wh.event_name(ev.type)
        rec = ev.record
        if rec is not None and rec.status.is_terminal and rec.expires_at:
            await retention.schedule(store.r, rec.id, rec.expires_at)
        if (
            name is None
            or name == "progress"
            or rec is None
            or not wh.wants(rec.webhook_url, rec.webhook_events, name)
        ):
            return
        data = public_video(rec, storage=storage, ttl_s=settings.url_ttl_s, base_url=base_url(settings))
        msg = wh.build_message(rec.id, str(rec.webhook_url), name, data.model_dump(mode="json"))
        try:
            await asyncio.wait_for(
                asyncio.to_thread(wh.enqueue, queue.celery.send_task, msg), settings.enqueue_timeout_s
            )
        except Exception as exc:  # the job's own state change must not fail because of a webhook
            log.warning("could not enqueue webhook %s for %s: %r", name, rec.id, exc)

    store.add_transition_hook(hook)
    sweep = retention.sweeper(store.r, storage, settings.retention_sweep_interval_s)
    return asyncio.create_task(sweep, name="wanserve-retention")
