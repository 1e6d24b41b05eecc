"""In-process HTTP contract tests: `create_app(settings, state=...)` behind httpx's ASGITransport.

No uvicorn and no Celery worker: the job store is the real one on the session's real redis-server
(its own database, flushed per test, so the Lua scripts run for real), storage is a real local
folder, and only the broker is replaced by `RecordingQueue`, which records what would be
published. A fake worker heartbeat makes ``tiny-ti2v`` a served model.

Fixtures: ``service`` (a `Service`: ``.client``, ``.queue``, ``.state``, ``.sync_redis``) with auth
off, ``secured`` the same with auth on (``.key(name)`` creates an API key and returns its headers).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from app.api.main import create_app
from app.api.state import AppState
from app.api.streams import EventStreams
from app.core import registry
from app.core.apikeys import ApiKeyStore
from app.core.celery_message import BrokerPush
from app.core.celeryconf import GENERATE_TASK
from app.core.config import Settings
from app.core.errors import QueueUnavailable
from app.core.jobstore_async import AsyncJobStore
from app.core.redis_mux import RedisMux
from app.core.redisconn import async_client
from app.core.storage import make_storage
from model.presets import PRESETS
from tests.service_support import RedisServer

SERVICE_DB = 7  # a database of its own: the integration tests' workers use database 0
MODEL = "tiny-ti2v"


@dataclass
class Enqueued:
    job_id: str
    model_id: str
    task: str
    queue: str | None
    priority: str = "normal"


@dataclass
class RecordingQueue:
    """The broker side of `TaskQueue`: records publishes and revokes; ``down`` makes it fail."""

    enqueued: list[Enqueued] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    down: bool = False

    async def enqueue(
        self,
        job_id: str,
        model_id: str,
        *,
        task: str = GENERATE_TASK,
        queue: str | None = None,
        priority: str = "normal",
    ) -> None:
        if self.down:
            raise QueueUnavailable("the job queue is unavailable; retry later")
        self.enqueued.append(Enqueued(job_id, model_id, task, queue, priority))

    async def revoke(self, job_id: str) -> None:
        self.revoked.append(job_id)

    def push(
        self,
        job_id: str,
        model_id: str,
        *,
        task: str = GENERATE_TASK,
        queue: str | None = None,
        priority: str = "normal",
    ) -> BrokerPush | None:
        return None  # every publish goes through `enqueue`, where it is recorded


@dataclass
class Service:
    client: httpx.AsyncClient
    queue: RecordingQueue
    state: AppState
    sync_redis: redis.Redis

    async def key(self, name: str) -> dict[str, str]:
        _, token = await ApiKeyStore(self.state.redis).create(name)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _announce(r: redis.Redis) -> None:
    preset = PRESETS[MODEL]
    registry.publish_heartbeat(
        r,
        worker_id="service-test-worker",
        preset_json=json.dumps(preset.to_dict()),
        model_id=preset.model_id,
        state="ready",
        device="cpu",
        current_job=None,
        ttl_s=3600,
    )


def _factory(redis_server: RedisServer, tmp_path: Path) -> Callable[..., Any]:
    url = f"redis://127.0.0.1:{redis_server.port}/{SERVICE_DB}"

    async def start(**overrides: Any) -> AsyncIterator[Service]:
        settings = Settings(_env_file=None, redis_url=url, data_dir=tmp_path, model=MODEL, **overrides)
        sync_redis = redis.Redis.from_url(url, decode_responses=True)
        sync_redis.flushdb()
        _announce(sync_redis)
        r = async_client(settings)
        queue = RecordingQueue()
        state = AppState(
            settings=settings,
            redis=r,
            store=AsyncJobStore(r, retention_s=settings.retention_s),
            queue=queue,
            storage=make_storage(settings),
            streams=EventStreams.open(r, settings),
            mux=RedisMux.from_url(url, timeout_s=settings.redis_timeout_s),  # as the gateway runs
        )
        app = create_app(settings, state=state)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            yield Service(client, queue, state, sync_redis)
        await state.streams.close()
        if state.mux is not None:
            await state.mux.close()
        await r.aclose()
        sync_redis.flushdb()
        sync_redis.close()

    return start


@pytest.fixture
async def service(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Service]:
    async for s in _factory(redis_server, tmp_path)():
        yield s


@pytest.fixture
async def secured(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Service]:
    async for s in _factory(redis_server, tmp_path)(auth=True, signing_key="service-test-signing-key"):
        yield s
