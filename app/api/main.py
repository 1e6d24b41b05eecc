"""The gateway: `create_app(settings)` plus a lifespan that opens Redis, the queue and storage."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import webhooks
from app.api.docs import apply_docs
from app.api.errors import register_error_handlers
from app.api.observability import install_observability, start_background
from app.api.queue import JobQueue
from app.api.routes import (
    content,
    events,
    health,
    logs,
    loras,
    models,
    preview,
    queue_view,
    styles,
    video_sources,
    videos,
    web,
)
from app.api.security import install_security
from app.api.state import AppState
from app.api.webhooks import install_gateway_hooks
from app.core.config import Settings
from app.core.jobstore_async import AsyncJobStore
from app.core.redisconn import async_client
from app.core.storage import make_storage

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        r = async_client(settings)
        queue = JobQueue(settings)
        state = AppState(
            settings=settings,
            redis=r,
            store=AsyncJobStore(r, retention_s=settings.retention_s),
            queue=queue,
            storage=make_storage(settings),
        )
        app.state.wanserve = state
        sweeper = install_gateway_hooks(state.store, queue, state.storage, settings)  # webhooks, retention
        background = start_background(state)  # metrics hook, reaper of dead workers' jobs (issue 5)
        log.info("gateway ready: redis=%s default model=%s", settings.redis_url, settings.model)
        try:
            yield
        finally:
            sweeper.cancel()
            for task in background:
                task.cancel()
            queue.close()
            await r.aclose()

    app = FastAPI(
        title="wanserve",
        version="0.1.0",
        summary="Wan2.2 video generation behind a durable asynchronous REST API (OpenAI /v1/videos shape).",
        lifespan=lifespan,
    )
    register_error_handlers(app)
    install_security(app, settings)  # auth, rate limits, CORS, body-size cap (issue 4)
    install_observability(app)  # X-Request-ID, GET /metrics, GET /v1/admin/workers (issue 5)
    app.include_router(webhooks.router)  # GET /v1/videos/{id}/webhooks
    app.include_router(video_sources.router)  # extensions, edits, remixes (issue 17)
    for module in (videos, content, events, logs, preview, queue_view, models, styles, health):
        app.include_router(module.router)
    app.include_router(loras.router)  # GET /v1/loras (issue 14)
    app.include_router(web.router)  # GET /: the web page
    apply_docs(app)  # summaries, examples and problem+json errors for every route (app/api/docs.py)
    return app
