"""Recovery of `queued` jobs that have no broker message: re-publish them, or fail them.

A queued record with no message anywhere in the broker is never started and holds an active-job
slot forever. It happens when the gateway dies between storing the record and publishing it (or
the undo after a failed publish fails too), and when a worker's child dies after taking the
message but before the job moved to ``in_progress`` (the parent acknowledges a lost child's
message: ``task_reject_on_worker_lost`` is off).

Telling such a job from one that waits its turn: every job's message is a JSON text naming the job
id (the task id), in its queue's list while it waits, and in the transport's ``unacked`` hash
while a worker holds it. A queued job older than ``older_than_s`` whose id is in neither is lost;
a job that is in either is left alone (never published twice). The broker is only read when some
queued job is that old, and then one list read per queue. Re-publications are counted per job (a
small hash beside the record); with ``max_attempts`` reached the job fails as ``worker_lost``.
A re-published job is not looked at again for ``older_than_s``, so its new message has time to
be taken.

The one window this cannot see: a worker that has popped the message from the list and not yet
written it to ``unacked`` (one pipelined round trip); a job older than ``older_than_s`` caught in
exactly that instant would be published twice, and the second delivery finds it started or done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

import redis.asyncio as aredis

from app.core import keys
from app.core.extenders import EXTEND_QUEUE
from app.core.jobstore import TransitionRejected
from app.core.jobstore_async import AsyncJobStore
from app.core.priority import PRIORITIES, band, broker_lists
from app.core.schemas import JobErrorInfo
from app.core.status import JobStatus

log = logging.getLogger(__name__)

Enqueue = Callable[..., Awaitable[None]]  # (job id, model id, *, priority=...)
UNACKED = "unacked"  # kombu's Redis transport: delivered, unacknowledged messages


republished = keys.job_republished


async def _stale_queued(r: aredis.Redis, older_than_s: float) -> dict[str, list[str]]:
    """model id -> ids of its queued jobs created more than ``older_than_s`` ago."""
    cutoff_ms = int((time.time() - older_than_s) * 1000)
    models = cast(list[str], await r.zrange(keys.MODELS_SEEN, 0, -1))
    out: dict[str, list[str]] = {}
    for model in models:
        ids: list[str] = []
        for priority in PRIORITIES:  # the zset is scored by priority band, then enqueue time
            lo, _ = band(priority)
            ids += cast(list[str], await r.zrangebyscore(keys.queued(model), lo, lo + cutoff_ms))
        if ids:
            out[model] = ids
    return out


async def _broker_text(broker: aredis.Redis, models: list[str]) -> str:
    """Every message waiting in these models' queues (and the extension queue) or held by a worker."""
    parts: list[str] = []
    for queue in [keys.model_queue(m) for m in models] + [EXTEND_QUEUE]:
        for name in broker_lists(queue):  # one list per priority step
            parts += cast(list[str], await broker.lrange(name, 0, -1))
    parts += cast(list[str], await broker.hvals(UNACKED))
    return "\n".join(p.decode() if isinstance(p, bytes) else p for p in parts)


async def sweep_queued(
    r: aredis.Redis,
    broker: aredis.Redis,
    store: AsyncJobStore,
    *,
    older_than_s: float,
    max_attempts: int,
    enqueue: Enqueue,
) -> dict[str, str]:
    """One sweep; returns job id -> "republished" | "failed" for the jobs it acted on."""
    stale = await _stale_queued(r, older_than_s)
    if not stale:
        return {}
    in_broker = await _broker_text(broker, list(stale))
    now = time.time()
    out: dict[str, str] = {}
    for model, job_ids in stale.items():
        for job_id in job_ids:
            if job_id in in_broker:
                continue  # waiting its turn, or held by a worker
            try:
                outcome = await _recover(r, store, job_id, model, now, older_than_s, max_attempts, enqueue)
            except Exception as exc:  # one bad record or a broker hiccup: the next sweep tries again
                log.warning("queued sweep: %s: %r", job_id, exc, extra={"job_id": job_id})
                continue
            if outcome is not None:
                out[job_id] = outcome
                log.warning(
                    "queued job %s had no broker message: %s", job_id, outcome, extra={"job_id": job_id}
                )
    return out


async def _recover(
    r: aredis.Redis,
    store: AsyncJobStore,
    job_id: str,
    model: str,
    now: float,
    older_than_s: float,
    max_attempts: int,
    enqueue: Enqueue,
) -> str | None:
    seen = cast(dict[str, str], await r.hgetall(republished(job_id)))
    if now - float(seen.get("at", 0)) < older_than_s:
        return None  # re-published recently: give the message time to be taken
    rec = await store.get(job_id)
    if rec is None or rec.status is not JobStatus.QUEUED:
        return None
    count = int(seen.get("n", 0))
    if count + rec.attempts >= max_attempts:
        err = JobErrorInfo(
            code="worker_lost", message=f"the job never reached a running worker ({count} re-publications)"
        )
        try:
            await store.transition(
                rec, JobStatus.FAILED, {"error": err}, allowed=frozenset({JobStatus.QUEUED})
            )
        except TransitionRejected:
            return None
        return "failed"
    await enqueue(job_id, model, priority=rec.priority)
    async with r.pipeline(transaction=True) as p:
        p.hincrby(republished(job_id), "n", 1)
        p.hset(republished(job_id), "at", repr(now))
        p.expire(republished(job_id), int(older_than_s * (max_attempts + 2)) + 3600)
        await p.execute()
    return "republished"
