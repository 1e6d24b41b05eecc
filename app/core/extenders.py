"""Where prompt extension runs, and whether it is available (torch-free; gateway and workers).

Two placements, chosen by ``Settings.prompt_extend_queue``:

- ``false`` (default): the model worker runs the LLM before text encoding. Each worker says in its
  heartbeat (``prompt_extend`` = "1"/"0", see `app.core.registry`) whether it loaded one.
- ``true``: the gateway sends jobs that ask for extension to the ``prompt_extend`` queue first.
  A CPU extension worker (``python -m worker.extend_worker``) rewrites the prompt, stores it in
  the job record, then enqueues ``wan.generate`` on the model's queue. Extension workers announce
  themselves here: hash ``wanserve:extender:<id>`` (TTL) plus the zset ``wanserve:extenders``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

import redis
import redis.asyncio as aredis

from app.core import keys
from app.core.config import Settings
from app.core.registry import WorkerInfo

EXTEND_TASK = "wan.prompt_extend"
EXTEND_QUEUE = "prompt_extend"


def publish_extender(r: redis.Redis, *, worker_id: str, model: str, ttl_s: float) -> None:
    now = time.time()
    mapping = {"model": model, "heartbeat": repr(now)}
    with r.pipeline(transaction=True) as p:
        p.hset(keys.extender(worker_id), mapping=cast(Any, mapping))
        p.pexpire(keys.extender(worker_id), int(ttl_s * 1000))
        p.zadd(keys.EXTENDERS, {worker_id: now})
        p.execute()


def remove_extender(r: redis.Redis, worker_id: str) -> None:
    with r.pipeline(transaction=True) as p:
        p.delete(keys.extender(worker_id))
        p.zrem(keys.EXTENDERS, worker_id)
        p.execute()


async def live_extenders(r: aredis.Redis, ttl_s: float) -> list[str]:
    """Ids of extension workers heard from within ``ttl_s``."""
    await r.zremrangebyscore(keys.EXTENDERS, "-inf", time.time() - ttl_s)
    return [str(x) for x in cast(list[Any], await r.zrange(keys.EXTENDERS, 0, -1))]


async def extension_available(r: aredis.Redis, settings: Settings, workers: Sequence[WorkerInfo]) -> bool:
    """Can a job for a model served by ``workers`` have its prompt extended?"""
    if settings.prompt_extend_queue:
        return bool(await live_extenders(r, settings.worker_ttl_s))
    return any(w.prompt_extend for w in workers)


def extend_route(prompt_extend: bool, settings: Settings) -> dict[str, str]:
    """Keyword arguments for `JobQueue.enqueue`: the extension queue first, when configured."""
    if prompt_extend and settings.prompt_extend_queue:
        return {"task": EXTEND_TASK, "queue": EXTEND_QUEUE}
    return {}
