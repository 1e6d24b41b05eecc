"""The gateway's long-lived resources, opened in `lifespan` and reached through `app.api.deps`."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aredis

from app.api.queue import JobQueue
from app.api.streams import EventStreams
from app.core.config import Settings
from app.core.jobstore_async import AsyncJobStore
from app.core.storage import Storage


@dataclass
class AppState:
    settings: Settings
    redis: aredis.Redis
    store: AsyncJobStore
    queue: JobQueue
    storage: Storage
    streams: EventStreams
