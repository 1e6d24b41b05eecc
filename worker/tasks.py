"""Celery tasks. Thin: all logic lives in `worker.execute`, testable without Celery."""

from __future__ import annotations

import logging

from celery import Celery

from app.core.celeryconf import GENERATE_TASK
from worker.execute import run_job
from worker.leases import job_lease
from worker.observe import job_context, submitted_request_id
from worker.runtime import get_runtime

log = logging.getLogger(__name__)


def register_tasks(app: Celery) -> None:
    def generate(job_id: str) -> str:
        rt = get_runtime()
        with (
            job_context(job_id, submitted_request_id(rt.redis, job_id)),
            job_lease(rt, job_id),
        ):  # log context; lease renewed while it runs
            outcome = run_job(rt, job_id)
            log.info("job %s: %s", job_id, outcome)
        return outcome

    app.task(name=GENERATE_TASK, acks_late=True, ignore_result=True)(generate)
