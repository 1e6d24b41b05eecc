"""What a job's status change causes, decided in one place for every process.

A transition changes the record and appends its event to the job's stream in one Lua script
(`app.core.jobstore`), so the SSE event can never disagree with the status. Everything else a
change causes follows it, planned by `Effects.plan(event)` — the same list whichever process made
the change (the gateway, a GPU worker, the Celery parent settling a job whose worker died):

- `CountMetrics`: the Prometheus counters kept in Redis (`app.core.metrics`);
- `ScheduleRetention`: a finished job's assets are deleted at its ``expires_at`` (`app.core.retention`);
- `SendWebhook`: the job's webhook message, handed to the ``webhooks`` queue (`app.core.webhooks`).

Every process builds its store with `build_job_store` (sync: GPU workers, the Celery parent, the
extension worker) or `build_async_job_store` (the gateway). A store built without effects (unit
tests, CLI tools) only writes Redis. Each effect is applied on its own: one that fails is logged,
never undoes the status change and never skips the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio as aredis

from app.core import keys, metrics, retention
from app.core import webhooks as wh
from app.core.config import Settings
from app.core.jobstore import JobEvent, JobStore, decode_record
from app.core.jobstore_async import AsyncJobStore
from app.core.schemas import JobRecord
from app.core.status import EVENT_TYPES, PROGRESS_EVENT, JobStatus
from app.core.storage import Storage
from app.core.video_object import public_video

log = logging.getLogger(__name__)
QUEUED_EVENT = EVENT_TYPES[JobStatus.QUEUED]
_PROGRESS_CACHE = 1000  # jobs whose progress-webhook choice a worker remembers
# the gateway re-adds a model to the metrics' model set at most this often (not on every create)
_MODEL_SEEN_REFRESH_S = 60.0


@dataclass(frozen=True)
class CountMetrics:
    ops: tuple[metrics.Op, ...]
    queued_model: str | None = None  # a job was queued for this model: it gets queue gauges


@dataclass(frozen=True)
class ScheduleRetention:
    job_id: str
    expires_at: float


@dataclass(frozen=True)
class SendWebhook:
    message: dict[str, Any]


Effect = CountMetrics | ScheduleRetention | SendWebhook


class Effects:
    """Decides the effects of one event; reads nothing (a webhook payload mints signed URLs)."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings, self.storage = settings, storage

    def plan(self, ev: JobEvent, subject: JobRecord | None = None) -> list[Effect]:
        """``subject``: the job's record for a progress event (those carry none), or None."""
        out: list[Effect] = []
        new = ev.record
        queued = new.model if new is not None and ev.type == QUEUED_EVENT else None
        ops = metrics.event_ops(ev)
        if ops or queued:
            out.append(CountMetrics(tuple(ops), queued))
        if new is not None and new.status.is_terminal and new.expires_at:
            out.append(ScheduleRetention(new.id, new.expires_at))
        rec = new or subject
        name = wh.event_name(ev.type)
        if name is not None and rec is not None and wh.wants(rec.webhook_url, rec.webhook_events, name):
            s = self.settings
            data = public_video(rec, storage=self.storage, ttl_s=s.url_ttl_s, base_url=s.public_base_url)
            message = wh.build_message(rec.id, str(rec.webhook_url), name, data.model_dump(mode="json"))
            out.append(SendWebhook(message))
        return out


class SyncEffects:
    """Applies `Effects` after each change of a `JobStore` (worker processes)."""

    def __init__(self, effects: Effects, r: redis.Redis, send_task: wh.SendTask) -> None:
        self.effects, self.r, self.send_task = effects, r, send_task
        self.progress_interval_s = effects.settings.webhook_progress_interval_s
        self._wants_progress: dict[str, bool] = {}

    def __call__(self, ev: JobEvent) -> None:
        subject = self._progress_subject(ev) if ev.type == PROGRESS_EVENT else None
        for effect in self.effects.plan(ev, subject):
            try:
                self.apply(effect)
            except Exception:
                log.exception("%s of job %s failed", type(effect).__name__, ev.job_id)

    def apply(self, effect: Effect) -> None:
        if isinstance(effect, CountMetrics):
            if effect.queued_model:
                self.r.sadd(keys.METRICS_MODELS, effect.queued_model)
            metrics.record_sync(self.r, list(effect.ops))
        elif isinstance(effect, ScheduleRetention):
            retention.schedule_sync(self.r, effect.job_id, effect.expires_at)
        else:
            wh.enqueue(self.send_task, effect.message)

    def _progress_subject(self, ev: JobEvent) -> JobRecord | None:
        """The record when this step may send a progress webhook (throttled per job), else None."""
        if self._wants_progress.get(ev.job_id) is False:
            return None
        if not wh.progress_allowed(self.r, ev.job_id, self.progress_interval_s):
            return None
        rec = decode_record(cast(dict[str, str], self.r.hgetall(keys.job(ev.job_id))))
        if rec is not None:
            if len(self._wants_progress) > _PROGRESS_CACHE:
                self._wants_progress.clear()
            self._wants_progress[ev.job_id] = wh.wants(rec.webhook_url, rec.webhook_events, "progress")
        return rec


class AsyncEffects:
    """Applies `Effects` after each change of an `AsyncJobStore` (the gateway)."""

    def __init__(self, effects: Effects, r: aredis.Redis, send_task: wh.SendTask) -> None:
        self.effects, self.r, self.send_task = effects, r, send_task
        self.enqueue_timeout_s = effects.settings.enqueue_timeout_s
        self._models_added: dict[str, float] = {}  # model -> when this process last added it

    async def __call__(self, ev: JobEvent) -> None:
        for effect in self.effects.plan(ev):
            try:
                await self.apply(effect)
            except Exception as exc:  # the job's own change must not fail because of a side effect
                log.warning("%s of job %s failed: %r", type(effect).__name__, ev.job_id, exc)

    async def apply(self, effect: Effect) -> None:
        if isinstance(effect, CountMetrics):
            if effect.queued_model:
                await self._add_model(effect.queued_model)
            await metrics.record_async(self.r, list(effect.ops))
        elif isinstance(effect, ScheduleRetention):
            await retention.schedule(self.r, effect.job_id, effect.expires_at)
        else:
            send = asyncio.to_thread(wh.enqueue, self.send_task, effect.message)
            await asyncio.wait_for(send, self.enqueue_timeout_s)

    async def _add_model(self, model: str) -> None:
        """SADD the model to the metrics' set: a round trip per create would buy nothing, the set only
        grows (refreshed every minute in case someone emptied it)."""
        now = time.monotonic()
        if now - self._models_added.get(model, float("-inf")) < _MODEL_SEEN_REFRESH_S:
            return
        await self.r.sadd(keys.METRICS_MODELS, model)
        self._models_added[model] = now


def build_job_store(
    settings: Settings, r: redis.Redis, *, storage: Storage, send_task: wh.SendTask
) -> JobStore:
    """The worker-side store with every effect of a change attached."""
    effects = SyncEffects(Effects(settings, storage), r, send_task)
    return JobStore(r, retention_s=settings.retention_s, effects=effects)


def build_async_job_store(
    settings: Settings, r: aredis.Redis, *, storage: Storage, send_task: wh.SendTask
) -> AsyncJobStore:
    """The gateway's store with every effect of a change attached."""
    effects = AsyncEffects(Effects(settings, storage), r, send_task)
    return AsyncJobStore(r, retention_s=settings.retention_s, effects=effects)
