"""The worker's Celery app, built from `Settings` (no env reads at import time).

Configuration (`app.core.celeryconf`): late ack + prefetch 1, visibility timeout above the longest
job, hard/soft time limits, no result backend. The model loads once per executing process: in the
prefork child via ``worker_process_init`` (``worker_proc_alive_timeout`` is raised to the model
load timeout so a slow load is not mistaken for a hung child), or in the main process for the
solo pool. One worker consumes one queue, ``model.<model id>``.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery, signals

from app.core import keys
from app.core.celeryconf import GENERATE_TASK, celery_config
from app.core.config import Settings
from app.core.effects import build_job_store
from app.core.jobstore import JobStore
from app.core.leases import Leases
from app.core.priority import BROKER_PRIORITY
from app.core.redisconn import sync_client
from app.core.storage import make_storage
from worker.lost import failure_handler
from worker.runtime import init_runtime, shutdown_runtime
from worker.shutdown import install_shutdown_grace
from worker.tasks import register_tasks
from worker.webhooks import deliver_webhook  # noqa: F401  (the shared task joins this app too)


def requeue_job(app: Celery, store: JobStore, job_id: str, model_id: str) -> None:
    """Publish a lost job's task again; it keeps its place among the priorities."""
    rec = store.get(job_id)
    priority = BROKER_PRIORITY[rec.priority if rec is not None else "normal"]
    queue = keys.model_queue(model_id)
    app.send_task(GENERATE_TASK, args=(job_id,), task_id=job_id, queue=queue, priority=priority)


def create_celery(settings: Settings, *, pool: str = "prefork") -> Celery:
    app = Celery("wanserve-worker")
    app.conf.update(celery_config(settings))
    register_tasks(app)

    init_signal = signals.worker_init if pool == "solo" else signals.worker_process_init
    shutdown_signal = signals.worker_shutdown if pool == "solo" else signals.worker_process_shutdown

    def _load_model(**_: Any) -> None:
        init_runtime(settings)

    def _unload(**_: Any) -> None:
        shutdown_runtime()

    init_signal.connect(_load_model, weak=False)
    shutdown_signal.connect(_unload, weak=False)

    stores: list[JobStore] = []  # the parent's own store, created on first use

    def store() -> JobStore:
        if not stores:  # a job it fails has the same effects as anywhere else: webhook, retention
            storage = make_storage(settings)
            stores.append(
                build_job_store(settings, sync_client(settings), storage=storage, send_task=app.send_task)
            )
        return stores[0]

    def requeue(job_id: str, model_id: str) -> None:
        requeue_job(app, store(), job_id, model_id)

    def claim(job_id: str) -> bool:  # the dead child's lease, unless the reaper took it first
        got = Leases(store().r).claim(job_id, time.time(), expired=False, owner=settings.resolved_worker_id())
        return got is not None

    on_failure = failure_handler(
        store,
        requeue,
        max_attempts=settings.max_attempts,
        time_limit_s=settings.job_time_limit_s,
        claim=claim,
    )
    signals.task_failure.connect(on_failure, weak=False)
    install_shutdown_grace(settings, lambda: store().r, requeue)  # SIGTERM: finish or requeue in time

    return app
