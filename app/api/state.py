"""The gateway's long-lived resources, reached by routes through `app.api.deps`.

`create_app` opens them in its lifespan, or takes them ready-made (``create_app(settings,
state=...)``): the in-process service tests give a real Redis store and storage with a recording
queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aredis

from app.api.queue import TaskQueue
from app.api.served import ServedModels
from app.api.streams import EventStreams
from app.core.config import Settings
from app.core.jobstore_async import AsyncJobStore
from app.core.ratelimit import RateLimiter, rate_limits
from app.core.redis_mux import RedisMux
from app.core.storage import Storage


@dataclass
class AppState:
    settings: Settings
    redis: aredis.Redis
    store: AsyncJobStore
    queue: TaskQueue
    storage: Storage
    streams: EventStreams
    # the pipelined connection of the per-request scripts and key lookups (`app.core.redis_mux`);
    # None: everything goes through ``redis``'s pool
    mux: RedisMux | None = None
    served: ServedModels = field(init=False)  # the create path's view of the worker registry
    limiter: RateLimiter = field(init=False)  # one per process: its scripts are registered once

    def __post_init__(self) -> None:
        self.served = ServedModels(self.redis, self.settings.worker_ttl_s)
        self.limiter = RateLimiter(self.redis, rate_limits(self.settings))
        if self.mux is not None:
            self.store.run_hot_scripts_on(self.mux)
            self.limiter.run_hit_script_on(self.mux)
