"""`GET /metrics` (Prometheus text, counted in Redis so every worker and gateway is included) and
`GET /v1/admin/workers` (live workers; an admin key when auth is on)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from app.api.deps import AdminDep, RedisDep, SettingsDep
from app.api.docs import ROUTE_DOCS, RouteDoc
from app.core import metrics
from app.core.errors import QueueUnavailable
from app.core.registry import live_workers

router = APIRouter()


@router.get("/metrics", tags=["health"], response_class=Response)
async def get_metrics(redis: RedisDep, settings: SettingsDep) -> Response:
    """Prometheus metrics: queues, jobs by outcome, stage durations, webhooks, workers."""
    try:
        snap = await asyncio.wait_for(
            metrics.collect(redis, settings.worker_ttl_s), settings.redis_timeout_s * 3
        )
    except TimeoutError:
        raise QueueUnavailable("the job store is unavailable; retry later") from None
    return Response(metrics.render(snap), media_type=metrics.CONTENT_TYPE)


def _num(v: str | None) -> int | None:
    return int(v) if v and v.isdigit() else None


@router.get("/v1/admin/workers", tags=["admin"])
async def admin_workers(redis: RedisDep, settings: SettingsDep, _admin: AdminDep) -> dict[str, Any]:
    """Live workers: model, device, state, current job, memory, last heartbeat (API key when auth is on)."""
    now = time.time()
    data: list[dict[str, Any]] = []
    for w in await live_workers(redis, settings.worker_ttl_s):
        data.append(
            {
                "id": w.worker_id,
                "model": w.model_id,
                "device": w.device,
                "state": w.state,
                "current_job": w.current_job,
                "group": w.group,  # a worker group's devices and split; null for one process
                "pid": _num(w.extra.get("pid")),
                "resident_memory_bytes": _num(w.extra.get("rss_bytes")),
                "device_memory_allocated_bytes": _num(w.extra.get("device_allocated_bytes")),
                "device_memory_reserved_bytes": _num(w.extra.get("device_reserved_bytes")),
                "last_heartbeat": w.heartbeat,
                "last_heartbeat_age_s": round(max(0.0, now - w.heartbeat), 3),
            }
        )
    return {"object": "list", "data": data}


METRICS_EXAMPLE = """# HELP wanserve_queue_depth Jobs waiting in the queue
# TYPE wanserve_queue_depth gauge
wanserve_queue_depth{model="wan2.2-ti2v-5b"} 3.0
# HELP wanserve_jobs_total Jobs that reached a terminal status
# TYPE wanserve_jobs_total counter
wanserve_jobs_total{error_code="",status="completed"} 120.0
wanserve_jobs_total{error_code="out_of_memory",status="failed"} 1.0
"""
WORKER_EXAMPLE = {
    "id": "gpu0-4121",
    "model": "wan2.2-ti2v-5b",
    "device": "cuda:0,cuda:1",
    "state": "busy",
    "current_job": "video_3f0c5d6e8a9b4c1d2e3f4a5b6c7d8e9f",
    "group": {"devices": ["cuda:0", "cuda:1"], "world_size": 2, "ulysses": 2, "cfg_parallel": False},
    "pid": 4187,
    "resident_memory_bytes": 9123456789,
    "device_memory_allocated_bytes": 23456789012,
    "device_memory_reserved_bytes": 30064771072,
    "last_heartbeat": 1767225960.4,
    "last_heartbeat_age_s": 0.8,
}
ROUTE_DOCS[("GET", "/metrics")] = RouteDoc(
    "Prometheus metrics",
    "Queue depth and oldest-job age per model, jobs by terminal status and error code, per-stage "
    "durations (queue wait, text encoding, denoising per step, decoding, encoding, upload), webhook "
    "deliveries by outcome, workers and ready workers per model. Counted in Redis, so every worker "
    "and gateway is included.",
    (503,),
    {
        200: {
            "description": "Prometheus text exposition format 0.0.4",
            "content": {"text/plain": {"schema": {"type": "string"}, "example": METRICS_EXAMPLE}},
        }
    },
)
ROUTE_DOCS[("GET", "/v1/admin/workers")] = RouteDoc(
    "List live workers (admin)",
    "Every worker heard from within the worker TTL: model, device, state, current job, resident and "
    "device memory, last heartbeat; for a worker group (`wanserve worker --devices`) its devices and "
    "how one job is split over them (`group`; memory figures are rank 0's). With auth on it needs an "
    "admin key (`wanserve keys create --name NAME --admin`); any other key answers 403.",
    (401, 403, 503),
    {
        200: {
            "description": "The live workers",
            "content": {"application/json": {"example": {"object": "list", "data": [WORKER_EXAMPLE]}}},
        }
    },
)
