"""The gateway: `create_app(settings)` plus a lifespan that opens Redis, the queue and storage.

`create_app(settings, state=...)` takes those resources ready-made instead and runs no lifespan:
the caller owns them and chose the job store's effects (the in-process service tests do this)."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp

from app.api.docs import apply_docs
from app.api.errors import register_error_handlers
from app.api.hot_routes import HotRoutes
from app.api.observability import install_observability
from app.api.queue import JobQueue
from app.api.routes import (
    admin,
    content,
    events,
    health,
    logs,
    models,
    preview,
    queue_view,
    styles,
    video_sources,
    videos,
    web,
    webhooks,
)
from app.api.security import install_security
from app.api.state import AppState
from app.api.streams import EventStreams
from app.core.background import start_gateway_loops, stop_gateway_loops
from app.core.config import Settings
from app.core.effects import build_async_job_store
from app.core.redis_mux import RedisMux
from app.core.redisconn import async_client
from app.core.storage import make_storage

log = logging.getLogger(__name__)


def _mount(app: FastAPI, router: APIRouter) -> None:
    """``app.include_router(router)`` without the nesting: FastAPI keeps an included router as one
    route that matches its own routes on every request (twice for the router that wins), which
    cost the create and status routes ~50 us of CPU each; our routers carry no include-time
    prefix, tags or dependencies (their routes have their full paths), so their routes are
    added to the app's route list as they are, in the same order, with the same OpenAPI."""
    app.router.routes.extend(router.routes)


class Gateway(FastAPI):
    """FastAPI with `HotRoutes` outside its whole middleware stack (create and status poll)."""

    max_body_bytes: int = 25 * 1024 * 1024

    def build_middleware_stack(self) -> ASGIApp:
        return HotRoutes(super().build_middleware_stack(), self, self.max_body_bytes)


def create_app(settings: Settings | None = None, *, state: AppState | None = None) -> FastAPI:
    if settings is None:
        settings = state.settings if state is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        r = async_client(settings)
        queue = JobQueue(settings)
        storage = make_storage(settings)
        store = build_async_job_store(settings, r, storage=storage, send_task=queue.celery.send_task)
        mux = RedisMux.from_url(settings.redis_url, timeout_s=settings.redis_timeout_s)
        state = AppState(
            settings=settings,
            redis=r,
            store=store,
            queue=queue,
            storage=storage,
            streams=EventStreams.open(r, settings),
            mux=mux,
        )
        app.state.wanserve = state
        loops = start_gateway_loops(settings, r, store, storage, enqueue=queue.enqueue)
        # Everything loaded so far (FastAPI, pydantic schemas, Celery, the app) lives as long as the
        # process: out of the collector's sight, a full collection no longer walks it, which took
        # the longest pauses out of the create route's tail latency.
        gc.freeze()
        log.info("gateway ready: redis=%s default model=%s", settings.redis_url, settings.model)
        try:
            yield
        finally:
            await stop_gateway_loops(loops)
            await state.streams.close()
            queue.close()
            if mux is not None:
                await mux.close()
            await r.aclose()

    app = Gateway(
        title="wanserve",
        version="0.1.0",
        summary="Wan2.2 video generation behind a durable asynchronous REST API (OpenAI /v1/videos shape).",
        lifespan=lifespan if state is None else None,
    )
    app.max_body_bytes = settings.max_body_bytes
    register_error_handlers(app)
    install_security(app, settings)  # auth, rate limits, CORS, body-size cap
    install_observability(app)  # X-Request-ID in every answer and log line
    _mount(app, admin.router)  # GET /metrics, GET /v1/admin/workers
    _mount(app, webhooks.router)  # GET /v1/videos/{id}/webhooks
    _mount(app, video_sources.router)  # extensions, edits, remixes
    for module in (
        videos,
        content,
        events,
        logs,
        preview,
        queue_view,
        models,
        styles,
        health,
    ):  # models: +/v1/loras
        _mount(app, module.router)
    _mount(app, web.router)  # GET /: the web page
    apply_docs(app)  # summaries, examples and problem+json errors for every route (app/api/docs.py)
    if state is not None:
        app.state.wanserve = state
    return app
