"""Enqueueing from the gateway without ever blocking the event loop on the broker.

When the broker is the job store's Redis, a new job's message is pushed by the script that stores
its record (`push`, `app.core.celery_message`): one round trip, no thread. Otherwise (and for
re-publications) Celery's publish runs in a worker thread under a small semaphore with a time
budget, and any broker failure or overrun becomes `QueueUnavailable` (503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from celery import Celery
from celery.utils.nodenames import anon_nodename

from app.core import keys
from app.core.celery_message import BrokerPush, TaskMessages
from app.core.celeryconf import GENERATE_TASK, celery_config
from app.core.config import Settings
from app.core.errors import QueueUnavailable
from app.core.priority import BROKER_PRIORITY

log = logging.getLogger(__name__)


class TaskQueue(Protocol):
    """What the gateway needs from the broker: `JobQueue`, or a recording fake in service tests."""

    async def enqueue(
        self,
        job_id: str,
        model_id: str,
        *,
        task: str = GENERATE_TASK,
        queue: str | None = None,
        priority: str = "normal",
    ) -> None: ...

    async def revoke(self, job_id: str) -> None: ...

    def push(
        self,
        job_id: str,
        model_id: str,
        *,
        task: str = GENERATE_TASK,
        queue: str | None = None,
        priority: str = "normal",
    ) -> BrokerPush | None:
        """The message for the create script to push itself, or None: publish with `enqueue`."""
        ...


class JobQueue:
    def __init__(self, settings: Settings, *, max_concurrency: int = 8) -> None:
        self.celery = Celery("wanserve-gateway")
        self.celery.conf.update(celery_config(settings))
        self.timeout_s = settings.enqueue_timeout_s
        self._sem = asyncio.Semaphore(max_concurrency)
        # the same server and database as the job store: the create script can push the message
        same_redis = settings.broker == settings.redis_url
        self._messages = (
            TaskMessages(origin=anon_nodename(), reply_to=self.celery.thread_oid) if same_redis else None
        )
        self._retry_policy = {
            "max_retries": 1,
            "interval_start": 0.05,
            "interval_step": 0.1,
            "interval_max": 0.2,
        }

    def _publish(self, job_id: str, model_id: str, task: str, queue: str | None, priority: str) -> None:
        self.celery.send_task(
            task,
            args=(job_id,),
            task_id=job_id,
            queue=queue or keys.model_queue(model_id),
            priority=BROKER_PRIORITY[priority],
            retry=True,
            retry_policy=self._retry_policy,
        )

    def push(
        self,
        job_id: str,
        model_id: str,
        *,
        task: str = GENERATE_TASK,
        queue: str | None = None,
        priority: str = "normal",
    ) -> BrokerPush | None:
        if self._messages is None:
            return None
        return self._messages.push(task, job_id, queue or keys.model_queue(model_id), priority)

    async def enqueue(
        self,
        job_id: str,
        model_id: str,
        *,
        task: str = GENERATE_TASK,
        queue: str | None = None,
        priority: str = "normal",
    ) -> None:
        """Publish ``task(job_id)`` on ``queue`` (default: the model's queue) at ``priority``."""
        t0 = time.perf_counter()
        try:
            async with self._sem:
                publish = asyncio.to_thread(self._publish, job_id, model_id, task, queue, priority)
                await asyncio.wait_for(publish, self.timeout_s)
        except Exception as exc:
            log.warning("enqueue of %s failed after %.3fs: %r", job_id, time.perf_counter() - t0, exc)
            raise QueueUnavailable("the job queue is unavailable; retry later") from exc

    async def revoke(self, job_id: str) -> None:
        """Best effort: the worker also skips a cancelled job by its record, so failures are ignored."""
        try:
            await asyncio.wait_for(asyncio.to_thread(self.celery.control.revoke, job_id), self.timeout_s)
        except Exception as exc:
            log.info("revoke of %s failed (ignored): %r", job_id, exc)

    def close(self) -> None:
        self.celery.close()
