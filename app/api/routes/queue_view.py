"""`GET /v1/queue`: per served model, the caller's running and waiting jobs (with queue positions);
other keys' jobs are only counted.

Positions come from the model's queued zset (``ZRANK``, 1-based as in the video object's
``queue_position``); running jobs from the live workers' heartbeats (``current_job``). Ownership is
one ``ZMSCORE`` on the caller's job index, so the view costs a fixed handful of round trips per model.
With auth off every job counts as the caller's.
"""

from __future__ import annotations

from typing import Literal, cast

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.deps import OwnerDep, RedisDep, SettingsDep
from app.core import keys
from app.core.registry import served_models

router = APIRouter(tags=["videos"])

MAX_LISTED = 1000  # waiting jobs inspected per model (the queue cap's default)


class QueuedJob(BaseModel):
    id: str
    status: Literal["queued", "in_progress"]
    queue_position: int | None = None  # 1 = next to start; None while running


class ModelQueue(BaseModel):
    model: str
    running: int  # every key's
    waiting: int  # every key's
    workers: int
    jobs: list[QueuedJob]  # the caller's own, running first, then by position


class QueueView(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelQueue]


async def _mine(redis: RedisDep, owner: str | None, ids: list[str]) -> list[bool]:
    if owner is None or not ids:
        return [True] * len(ids)
    scores = await redis.zmscore(keys.owner_index(owner), ids)
    return [s is not None for s in scores]


@router.get("/v1/queue", response_model=QueueView)
async def queue_view(redis: RedisDep, settings: SettingsDep, owner: OwnerDep) -> QueueView:
    """Running and waiting jobs per model: the caller's listed with positions, others counted."""
    out: list[ModelQueue] = []
    for model_id, (_, workers) in sorted((await served_models(redis, settings.worker_ttl_s)).items()):
        running_ids = [w.current_job for w in workers if w.current_job]
        waiting = int(await redis.zcard(keys.queued(model_id)))
        waiting_ids = cast(list[str], await redis.zrange(keys.queued(model_id), 0, MAX_LISTED - 1))
        mine_running = await _mine(redis, owner, running_ids)
        mine_waiting = await _mine(redis, owner, waiting_ids)
        jobs = [
            QueuedJob(id=j, status="in_progress") for j, m in zip(running_ids, mine_running, strict=True) if m
        ]
        jobs += [
            QueuedJob(id=j, status="queued", queue_position=i + 1)
            for i, (j, m) in enumerate(zip(waiting_ids, mine_waiting, strict=True))
            if m
        ]
        out.append(
            ModelQueue(
                model=model_id, running=len(running_ids), waiting=waiting, workers=len(workers), jobs=jobs
            )
        )
    return QueueView(data=out)
