"""`/healthz` (the process is up) and `/readyz` (Redis answers and workers are alive)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import RedisDep, SettingsDep
from app.core.registry import served_models

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {}})
async def readyz(redis: RedisDep, settings: SettingsDep) -> JSONResponse:
    """Ready when Redis answers and every served model has a ready worker (and at least one does)."""
    body: dict[str, Any] = {"redis": False, "models": {}}
    try:
        await asyncio.wait_for(redis.ping(), settings.redis_timeout_s)
        body["redis"] = True
        models = await served_models(redis, settings.worker_ttl_s)
    except Exception as exc:
        body["error"] = type(exc).__name__
        return JSONResponse({"status": "unavailable", **body}, status_code=503)
    for model_id, (_, workers) in models.items():
        body["models"][model_id] = {
            "workers": len(workers),
            "ready": sum(w.state in ("ready", "busy") for w in workers),
        }
    ok = bool(models) and all(m["ready"] > 0 for m in body["models"].values())
    return JSONResponse({"status": "ready" if ok else "not_ready", **body}, status_code=200 if ok else 503)
