"""The worker's Celery app, built from `Settings` (no env reads at import time).

Configuration (`app.core.celeryconf`): late ack + prefetch 1, visibility timeout above the longest
job, hard/soft time limits, no result backend. The model loads once per executing process: in the
prefork child via ``worker_process_init`` (``worker_proc_alive_timeout`` is raised to the model
load timeout so a slow load is not mistaken for a hung child), or in the main process for the
solo pool. One worker consumes one queue, ``model.<model id>``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from app.core.celeryconf import celery_config
from app.core.config import Settings
from worker.runtime import init_runtime, shutdown_runtime
from worker.tasks import register_tasks

log = logging.getLogger(__name__)


def create_celery(settings: Settings, *, pool: str = "prefork") -> Celery:
    app = Celery("wanserve-worker")
    app.conf.update(celery_config(settings))
    register_tasks(app)
    try:  # webhook delivery task (issue 4), when that module is present
        import worker.webhooks  # noqa: F401
    except ImportError:
        log.debug("worker.webhooks not available")

    init_signal = signals.worker_init if pool == "solo" else signals.worker_process_init
    shutdown_signal = signals.worker_shutdown if pool == "solo" else signals.worker_process_shutdown

    def _load_model(**_: Any) -> None:
        init_runtime(settings)

    def _unload(**_: Any) -> None:
        shutdown_runtime()

    init_signal.connect(_load_model, weak=False)
    shutdown_signal.connect(_unload, weak=False)

    return app
