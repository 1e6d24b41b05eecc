"""Gateway observability and recovery: request ids, ``GET /metrics``, the admin view, the reaper.

- `RequestIdMiddleware`: every response carries ``X-Request-ID`` (the caller's, when it is a sane
  token, else a new one); the id and the job id of ``/v1/videos/{id}`` routes are in every log
  line of the request (`app.core.logjson`).
- ``GET /metrics``: Prometheus text, computed from Redis (`app.core.metrics`), so it counts what
  every worker and gateway did, not just this process.
- ``GET /v1/admin/workers``: live workers with model, device, state, current job, resident and
  device memory, last heartbeat. Needs a valid API key when auth is on.
- `start_background(state)`: the job-store metrics hook and the reaper task (`app.core.reaper`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any, cast

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.deps import AdminDep, RedisDep, SettingsDep
from app.api.docs import ROUTE_DOCS, RouteDoc
from app.api.state import AppState
from app.core import keys, metrics
from app.core.errors import QueueUnavailable
from app.core.logjson import job_id_var, request_id_var
from app.core.reaper import Housekeeping, reaper
from app.core.redisconn import async_broker_client

HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_JOB_PATH = re.compile(r"^/v1/videos/(video_[0-9A-Za-z]{1,64})")
router = APIRouter()
access_log = logging.getLogger("wanserve.access")


class RequestIdMiddleware:
    """Pure ASGI (no buffering, so SSE streams pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1").strip()
        rid = given if _SANE_ID.match(given) else uuid.uuid4().hex
        m = _JOB_PATH.match(scope.get("path", ""))
        rtoken = request_id_var.set(rid)
        jtoken = job_id_var.set(m.group(1) if m else None)
        t0 = time.perf_counter()
        status = 0

        async def send_with_id(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
                msg = {**msg, "headers": [*msg.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(msg)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                ms = (time.perf_counter() - t0) * 1000
                access_log.info("%s %s %d %.1fms", scope.get("method"), scope.get("path"), status, ms)
            request_id_var.reset(rtoken)
            job_id_var.reset(jtoken)


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
    ids = cast(list[str], await redis.zrangebyscore(keys.WORKERS, now - settings.worker_ttl_s, "+inf"))
    async with redis.pipeline(transaction=False) as p:
        for wid in ids:
            p.hgetall(keys.worker(wid))
        raws = await p.execute()
    data: list[dict[str, Any]] = []
    for wid, raw in zip(ids, raws, strict=True):
        if not raw:
            continue
        beat = float(raw.get("heartbeat") or 0)
        data.append(
            {
                "id": wid,
                "model": raw.get("model_id"),
                "device": raw.get("device"),
                "state": raw.get("state"),
                "current_job": raw.get("current_job") or None,
                "pid": _num(raw.get("pid")),
                "resident_memory_bytes": _num(raw.get("rss_bytes")),
                "device_memory_allocated_bytes": _num(raw.get("device_allocated_bytes")),
                "device_memory_reserved_bytes": _num(raw.get("device_reserved_bytes")),
                "last_heartbeat": beat,
                "last_heartbeat_age_s": round(max(0.0, now - beat), 3),
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
    "device": "cuda:0",
    "state": "busy",
    "current_job": "video_3f0c5d6e8a9b4c1d2e3f4a5b6c7d8e9f",
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
    "device memory, last heartbeat. With auth on it needs an admin key "
    "(`wanserve keys create --name NAME --admin`); any other key answers 403.",
    (401, 403, 503),
    {
        200: {
            "description": "The live workers",
            "content": {"application/json": {"example": {"object": "list", "data": [WORKER_EXAMPLE]}}},
        }
    },
)


def install_observability(app: FastAPI) -> None:
    app.add_middleware(RequestIdMiddleware)
    app.include_router(router)


def start_background(state: AppState) -> list[asyncio.Task[None]]:
    """Called from the lifespan: the metrics hook on the gateway's store and the reaper task."""
    s = state.settings
    state.store.add_transition_hook(metrics.async_hook(state.redis))
    task = asyncio.create_task(
        reaper(
            state.redis,
            state.store,
            interval_s=s.reaper_interval_s,
            max_attempts=s.max_attempts,
            enqueue=state.queue.enqueue,
            housekeeping=Housekeeping(
                broker=state.redis if s.broker == s.redis_url else async_broker_client(s),
                queued_recover_s=s.queued_recover_s,
                retention_s=s.retention_s,
            ),
        ),
        name="wanserve-reaper",
    )
    return [task]
