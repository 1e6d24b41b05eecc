"""Worker registry: live workers publish their model preset and a heartbeat; the gateway reads it.

Each worker keeps a hash `keys.worker(id)` (TTL = worker_ttl_s, refreshed every heartbeat) with its
``model_id``, ``preset`` (the `ModelPreset` as JSON), ``state`` (loading | ready | busy), ``device``,
``current_job`` and ``heartbeat``; `keys.WORKERS` scores worker ids by last heartbeat. The gateway
builds `/v1/models` and validates requests from this, never from `model/`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, cast

import redis
import redis.asyncio as aredis

from app.core import keys
from app.core.schemas import ModelInfo


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: str
    model_id: str
    state: str
    device: str
    current_job: str | None
    heartbeat: float
    preset: ModelInfo
    prompt_extend: bool = False  # the worker has a prompt extension LLM (heartbeat extra)
    extra: dict[str, str] = field(default_factory=dict)  # every heartbeat field (pid, memory, ...)

    @property
    def group(self) -> dict[str, Any] | None:
        """A worker group's shape (devices, world_size, ulysses, cfg_parallel); None: one process."""
        raw = self.extra.get("group")
        if not raw:
            return None
        try:
            shape = json.loads(raw)
        except ValueError:
            return None
        return shape if isinstance(shape, dict) else None

    def shape(self) -> tuple[int, int, bool]:
        """(world size, Ulysses size, CFG parallel) of one job on this worker."""
        g = self.group or {}
        return int(g.get("world_size", 1)), int(g.get("ulysses", 1)), bool(g.get("cfg_parallel", False))


def publish_heartbeat(
    r: redis.Redis,
    *,
    worker_id: str,
    preset_json: str,
    model_id: str,
    state: str,
    device: str,
    current_job: str | None,
    ttl_s: float,
    extra: dict[str, str] | None = None,
) -> None:
    now = time.time()
    mapping: dict[str, str] = {
        "model_id": model_id,
        "preset": preset_json,
        "state": state,
        "device": device,
        "current_job": current_job or "",
        "heartbeat": repr(now),
        **(extra or {}),
    }
    with r.pipeline(transaction=True) as p:
        p.hset(keys.worker(worker_id), mapping=cast(Any, mapping))
        p.pexpire(keys.worker(worker_id), int(ttl_s * 1000))
        p.zadd(keys.WORKERS, {worker_id: now})
        p.hset(keys.PRESETS, model_id, preset_json)
        p.zadd(keys.MODELS_SEEN, {model_id: now})
        p.execute()


def remove_worker(r: redis.Redis, worker_id: str) -> None:
    with r.pipeline(transaction=True) as p:
        p.delete(keys.worker(worker_id))
        p.zrem(keys.WORKERS, worker_id)
        p.execute()


async def live_workers(r: aredis.Redis, ttl_s: float) -> list[WorkerInfo]:
    """Workers heard from within ``ttl_s``; stale index entries are pruned. The one read of the
    worker list: models, request validation, metrics and the admin view all use it."""
    now = time.time()
    await r.zremrangebyscore(keys.WORKERS, "-inf", now - ttl_s)
    ids = cast(list[str], await r.zrange(keys.WORKERS, 0, -1))
    async with r.pipeline(transaction=False) as p:
        for wid in ids:
            p.hgetall(keys.worker(wid))
        raws = await p.execute()
    out: list[WorkerInfo] = []
    for wid, raw in zip(ids, raws, strict=True):
        if not raw or "preset" not in raw:
            continue
        out.append(
            WorkerInfo(
                worker_id=wid,
                model_id=raw["model_id"],
                state=raw.get("state", "unknown"),
                device=raw.get("device", ""),
                current_job=raw.get("current_job") or None,
                heartbeat=float(raw.get("heartbeat", "0")),
                preset=ModelInfo.model_validate(json.loads(raw["preset"])),
                prompt_extend=raw.get("prompt_extend") == "1",
                extra=dict(raw),
            )
        )
    return out


async def served_models(r: aredis.Redis, ttl_s: float) -> dict[str, tuple[ModelInfo, list[WorkerInfo]]]:
    """model id -> (its published preset, the live workers serving it)."""
    models: dict[str, tuple[ModelInfo, list[WorkerInfo]]] = {}
    for w in await live_workers(r, ttl_s):
        if w.model_id in models:
            models[w.model_id][1].append(w)
        else:
            models[w.model_id] = (w.preset, [w])
    return models


async def recent_model(r: aredis.Redis, model_id: str, grace_s: float) -> ModelInfo | None:
    """The preset of a model that has no live worker now but had one within ``grace_s`` (a worker
    restarting or reloading its model): the gateway keeps queueing its jobs meanwhile."""
    seen = await r.zscore(keys.MODELS_SEEN, model_id)
    if seen is None or time.time() - float(seen) > grace_s:
        return None
    raw = await r.hget(keys.PRESETS, model_id)
    return None if raw is None else ModelInfo.model_validate(json.loads(raw))
