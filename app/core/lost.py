"""Settling a job whose worker died: requeue it while attempts remain, else fail it as ``worker_lost``.

Three places find such a job — the gateway's reaper (an expired lease), the Celery parent of a
killed prefork child, and a worker picking up a redelivered job that already used every attempt —
and all of them decide with `lost_job_error`, so the rule and the message are the same wherever
the loss is noticed. The caller has claimed the job's lease first (`app.core.leases`), so each
loss is settled once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.core.jobstore import JobStore, TransitionRejected
from app.core.jobstore_async import AsyncJobStore
from app.core.schemas import JobErrorInfo, JobRecord
from app.core.status import JobStatus

# a lost job may still read queued (requeued, then lost again before a worker started it)
SETTLE_FROM = frozenset({JobStatus.QUEUED, JobStatus.IN_PROGRESS})


def lost_job_error(rec: JobRecord, max_attempts: int) -> JobErrorInfo | None:
    """The failure to record for ``rec``, or None while it has attempts left (requeue it)."""
    if rec.attempts < max_attempts:
        return None
    return JobErrorInfo(
        code="worker_lost",
        message=(
            f"the worker running this job stopped before finishing, {rec.attempts} times "
            f"(max_attempts={max_attempts}); it is not retried again"
        ),
    )


def timeout_message(time_limit_s: int) -> str:
    """A job stopped at its time limit (in the task, or its process killed at the hard limit)."""
    return f"the job exceeded its time limit of {time_limit_s}s"


def settle_lost(store: JobStore, job_id: str, *, max_attempts: int, requeue: Callable[..., None]) -> str:
    """Requeue or fail a lost job (sync stores); returns skipped, requeued or failed."""
    rec = store.get(job_id)
    if rec is None or rec.status.is_terminal:
        return "skipped"
    error = lost_job_error(rec, max_attempts)
    if error is None:
        requeue(job_id, rec.model)
        return "requeued"
    try:
        store.transition(rec, JobStatus.FAILED, {"error": error}, allowed=SETTLE_FROM)
    except TransitionRejected:
        return "skipped"
    return "failed"


async def settle_lost_async(
    store: AsyncJobStore,
    job_id: str,
    *,
    max_attempts: int,
    requeue: Callable[..., Awaitable[None]],  # (job id, model id, *, priority=...)
) -> str:
    """`settle_lost` for the gateway's store (the reaper)."""
    rec = await store.get(job_id)
    if rec is None or rec.status.is_terminal:
        return "skipped"
    error = lost_job_error(rec, max_attempts)
    if error is None:
        await requeue(job_id, rec.model, priority=rec.priority)
        return "requeued"
    try:
        await store.transition(rec, JobStatus.FAILED, {"error": error}, allowed=SETTLE_FROM)
    except TransitionRejected:
        return "skipped"
    return "failed"
