"""Attempt fencing and cancel-before-complete in the atomic transition script."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.core.jobstore import JobStore, TransitionRejected
from app.core.jobstore_async import AsyncJobStore
from app.core.redisconn import async_client, sync_client
from app.core.status import JobStatus
from tests.unit.test_jobstore import record, settings  # noqa: F401  (fixture)


def _astore(settings) -> AsyncJobStore:  # noqa: F811
    return AsyncJobStore(async_client(settings), retention_s=60)


def _create(settings) -> tuple[JobStore, str]:  # noqa: F811
    rec = asyncio.run(_astore(settings).create(record(f"video_{time.monotonic_ns()}")))
    return JobStore(sync_client(settings), retention_s=60), rec.id


def test_a_superseded_attempt_is_refused_as_stale_not_as_gone(settings) -> None:  # noqa: F811
    store, job_id = _create(settings)
    rec = store.get(job_id)
    assert rec is not None and rec.attempt_token is None
    a = store.transition(rec, JobStatus.IN_PROGRESS, {"attempt_token": "A"}, fence=None)
    # a second pickup that read the record before A started is refused too (double delivery)
    with pytest.raises(TransitionRejected) as dup:
        store.transition(rec, JobStatus.IN_PROGRESS, {"attempt_token": "X"}, fence=None)
    assert dup.value.reason == "stale" and not dup.value.gone
    b = store.transition(a, JobStatus.IN_PROGRESS, {"attempt_token": "B"}, fence="A")  # requeued, B took it
    assert store.progress(job_id, 1, 3, "A") == -2  # A's steps are refused
    assert store.progress(job_id, 1, 3, "B") == 0
    for target in (JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED):
        with pytest.raises(TransitionRejected) as stale:
            store.transition(a, target, fence="A")
        assert stale.value.reason == "stale" and stale.value.current is JobStatus.IN_PROGRESS
        assert not stale.value.gone
    done = store.transition(b, JobStatus.COMPLETED, {"progress": 100}, fence="B")
    assert done.status is JobStatus.COMPLETED
    with pytest.raises(TransitionRejected) as late:
        store.transition(a, JobStatus.CANCELLED, fence="A")
    assert not late.value.gone
    store.r.delete(f"wanserve:job:{job_id}")
    with pytest.raises(TransitionRejected) as gone:
        store.transition(b, JobStatus.CANCELLED, fence="B")
    assert gone.value.gone


def test_completion_after_an_accepted_cancel_is_refused_atomically(settings) -> None:  # noqa: F811
    store, job_id = _create(settings)
    rec = store.get(job_id)
    assert rec is not None
    running = store.transition(rec, JobStatus.IN_PROGRESS, {"attempt_token": "A"}, fence=None)
    flagged = asyncio.run(_astore(settings).cancel(running))  # answered 202: the flag is raised
    assert flagged.cancel_requested
    with pytest.raises(TransitionRejected) as refused:
        store.transition(running, JobStatus.COMPLETED, {"progress": 100}, fence="A")
    assert refused.value.reason == "cancel"
    ended = store.transition(running, JobStatus.CANCELLED, fence="A")
    assert ended.status is JobStatus.CANCELLED
