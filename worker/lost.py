"""Settle jobs whose task died outside the task body (runs in the Celery parent process).

When the prefork child is killed (hard time limit, OOM killer, SIGKILL), Celery acks the message
(``task_reject_on_worker_lost`` stays off, so a job that kills its worker never loops by itself)
and fires ``task_failure`` in the parent. The job record would stay ``in_progress``, so:

- hard time limit → ``failed`` with code ``timeout``;
- worker lost → `app.core.lost.settle_lost`: re-enqueued while ``attempts < max_attempts`` (the
  next delivery counts another attempt), else ``failed`` with code ``worker_lost``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded

from app.core.jobstore import JobStore, TransitionRejected
from app.core.lost import settle_lost, timeout_message
from app.core.schemas import JobErrorInfo
from app.core.status import JobStatus

log = logging.getLogger(__name__)


def settle_lost_job(
    store: JobStore,
    job_id: str,
    *,
    timed_out: bool,
    max_attempts: int,
    time_limit_s: int,
    requeue: Callable[[str, str], None],
    claim: Callable[[str], bool] | None = None,
) -> str:
    """Returns what happened: skipped, failed, requeued.

    ``claim(job_id)`` takes the job's lease atomically; False means the reaper or the shutdown
    grace already settled this loss, so nothing is done twice.
    """
    if claim is not None and not claim(job_id):
        return "skipped"
    if not timed_out:
        outcome = settle_lost(store, job_id, max_attempts=max_attempts, requeue=requeue)
        log.warning("job %s lost its worker: %s", job_id, outcome, extra={"job_id": job_id})
        return outcome
    rec = store.get(job_id)
    if rec is None or rec.status.is_terminal:
        return "skipped"
    error = JobErrorInfo(code="timeout", message=timeout_message(time_limit_s))
    try:
        store.transition(rec, JobStatus.FAILED, {"error": error})
    except TransitionRejected:
        return "skipped"
    return "failed"


def failure_handler(
    store_factory: Callable[[], JobStore],
    requeue: Callable[[str, str], None],
    *,
    max_attempts: int,
    time_limit_s: int,
    claim: Callable[[str], bool] | None = None,
) -> Callable[..., None]:
    """A ``task_failure`` receiver; in-task failures are already settled by `worker.execute`."""

    def on_failure(task_id: str | None = None, exception: Any = None, args: Any = None, **_: Any) -> None:
        if not isinstance(exception, TimeLimitExceeded | WorkerLostError):
            return
        job_id = args[0] if args else task_id
        if not job_id:
            return
        try:
            outcome = settle_lost_job(
                store_factory(),
                job_id,
                timed_out=isinstance(exception, TimeLimitExceeded),
                max_attempts=max_attempts,
                time_limit_s=time_limit_s,
                requeue=requeue,
                claim=claim,
            )
            log.info("job %s after %s: %s", job_id, type(exception).__name__, outcome)
        except Exception:
            log.exception("could not settle job %s", job_id)

    return on_failure
