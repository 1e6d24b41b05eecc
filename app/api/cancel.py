"""Stop a job: cancel it (the record stays, ``cancelled``) or delete it (record and files go).

A queued job is cancelled at once and its task revoked; a running one gets the cancel flag its
worker checks every denoising step, so the answer is still pending (the route's 202).
"""

from __future__ import annotations

import asyncio

from app.api.state import AppState
from app.core.errors import Conflict
from app.core.schemas import JobRecord
from app.core.status import JobStatus
from app.core.storage import job_prefix


async def cancel_job(state: AppState, rec: JobRecord) -> JobRecord:
    """-> the record after the call: ``cancelled``, or still pending with the cancel requested.

    Conflict (409) when the job already finished, before or during the call."""
    if rec.status.is_terminal:
        raise Conflict(f"video {rec.id} is already {rec.status.value}; nothing to cancel")
    new = await state.store.cancel(rec)
    if new.status is JobStatus.CANCELLED and rec.status is JobStatus.QUEUED:
        await state.queue.revoke(rec.id)  # best effort: the worker skips a cancelled record anyway
    if not new.status.is_pending and new.status is not JobStatus.CANCELLED:
        raise Conflict(f"video {rec.id} is already {new.status.value}; nothing to cancel")
    return new


async def delete_job(state: AppState, rec: JobRecord) -> None:
    """Cancels a pending job (a running worker sees its record gone), then removes its files."""
    await state.store.delete(rec)
    await asyncio.to_thread(state.storage.delete_prefix, job_prefix(rec.id))
