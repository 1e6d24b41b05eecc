"""Worker job logic without Celery or a model: attempt cap, skips, cancel flag, deadline."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from app.core.config import Settings
from app.core.errors import JobCancelled, JobTimeout
from app.core.jobstore import JobStore
from app.core.lost import lost_job_error
from app.core.redisconn import sync_client
from app.core.schemas import JobRecord, ResolvedParams
from app.core.status import JobStatus
from app.core.storage import make_storage
from tests.service_support import SIGNING_KEY
from worker.execute import StepClock, run_job


class Runtime(SimpleNamespace):
    def set_busy(self, job_id):
        self.busy = job_id

    def free_device_memory(self, collect=True):
        pass


@pytest.fixture
def rt(redis_url, tmp_path):
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, signing_key=SIGNING_KEY, max_attempts=2)
    store = JobStore(sync_client(settings), retention_s=60)
    return Runtime(settings=settings, store=store, storage=make_storage(settings), worker_id="w", pipe=None)


def put(rt, status: JobStatus, attempts: int = 0) -> JobRecord:
    params = ResolvedParams(
        width=32,
        height=32,
        num_frames=5,
        fps=16,
        num_inference_steps=3,
        guidance_scale=[5.0],
        shift=5.0,
        sampler="unipc",
        seed=1,
    )
    rec = JobRecord(
        id=f"video_w{time.monotonic_ns()}",
        status=status,
        model="m",
        prompt="p",
        params=params,
        created_at=time.time(),
        attempts=attempts,
    )
    from app.core import keys
    from app.core.jobstore import encode_fields, pairs_to_dict

    rt.store.r.hset(keys.job(rec.id), mapping=pairs_to_dict(encode_fields(rec.model_dump())))
    return rec


def test_attempt_cap_fails_with_worker_lost(rt) -> None:
    rec = put(rt, JobStatus.IN_PROGRESS, attempts=2)
    assert run_job(rt, rec.id) == "failed"
    got = rt.store.get(rec.id)
    assert got.status is JobStatus.FAILED and got.error.code == "worker_lost"
    assert got.error.message == lost_job_error(rec, 2).message  # the reaper's and Celery parent's too


def test_skips_finished_gone_and_cancelled_jobs(rt) -> None:
    assert run_job(rt, "video_nothing") == "gone"
    for status in (JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED):
        rec = put(rt, status)
        assert run_job(rt, rec.id) == "skipped"
        assert rt.store.get(rec.id).status is status


def test_cancel_flag_before_start(rt) -> None:
    rec = put(rt, JobStatus.QUEUED)
    rt.store.r.set(f"wanserve:job:{rec.id}:cancel", "1")
    assert run_job(rt, rec.id) == "cancelled"
    got = rt.store.get(rec.id)
    assert got.status is JobStatus.CANCELLED and got.attempts == 1


def test_redelivered_job_with_stored_output_completes_without_generating(rt) -> None:
    rec = put(rt, JobStatus.IN_PROGRESS, attempts=1)
    rt.storage.put_bytes(f"videos/{rec.id}/thumbnail.webp", b"t")
    rt.storage.put_bytes(f"videos/{rec.id}/video.mp4", b"v")
    assert run_job(rt, rec.id) == "completed"  # rt.pipe is None: generating would raise
    assert rt.store.get(rec.id).assets["video"] == f"videos/{rec.id}/video.mp4"


def test_step_clock_cancel_and_deadline(rt) -> None:
    rec = put(rt, JobStatus.QUEUED)
    rt.store.transition(rec, JobStatus.IN_PROGRESS)
    clock = StepClock(rt, rec.id, deadline=time.monotonic() + 60)
    clock(1, 3, 999.0)
    assert rt.store.get(rec.id).step == 1
    with pytest.raises(JobTimeout):
        StepClock(rt, rec.id, deadline=time.monotonic() - 1)(2, 3, 900.0)
    rt.store.r.set(f"wanserve:job:{rec.id}:cancel", "1")
    with pytest.raises(JobCancelled):
        clock(3, 3, 800.0)
    assert set(clock.timings(time.monotonic())) == {"text_encoding", "denoising", "decoding"}


def test_settle_lost_job(rt) -> None:
    from worker.lost import settle_lost_job

    requeued: list[tuple[str, str]] = []
    kw = {"max_attempts": 2, "time_limit_s": 60, "requeue": lambda j, m: requeued.append((j, m))}
    rec = put(rt, JobStatus.IN_PROGRESS, attempts=1)
    assert settle_lost_job(rt.store, rec.id, timed_out=False, **kw) == "requeued"
    assert requeued == [(rec.id, "m")] and rt.store.get(rec.id).status is JobStatus.IN_PROGRESS
    rec = put(rt, JobStatus.IN_PROGRESS, attempts=2)
    assert settle_lost_job(rt.store, rec.id, timed_out=False, **kw) == "failed"
    assert rt.store.get(rec.id).error.code == "worker_lost"
    assert rt.store.get(rec.id).error.message == lost_job_error(rec, 2).message
    rec = put(rt, JobStatus.IN_PROGRESS, attempts=1)
    assert settle_lost_job(rt.store, rec.id, timed_out=True, **kw) == "failed"
    assert rt.store.get(rec.id).error.code == "timeout"
    rec = put(rt, JobStatus.COMPLETED, attempts=1)
    assert settle_lost_job(rt.store, rec.id, timed_out=False, **kw) == "skipped"


def test_a_worker_without_the_learned_interpolator_records_the_one_it_uses(rt) -> None:
    """The gateway names the interpolator from the model's published preset; a worker of that model
    started without WANSERVE_INTERPOLATOR_WEIGHTS says, from pickup on, that it uses minterpolate."""
    rec = put(rt, JobStatus.QUEUED)
    p = rec.params.model_copy(update={"fps": 8, "output_fps": 16, "interpolation": "rife"})
    rt.store.r.hset(f"wanserve:job:{rec.id}", "params", p.model_dump_json())
    rt.interpolation = "minterpolate"
    rt.store.r.set(f"wanserve:job:{rec.id}:cancel", "1")  # stop right after pickup
    assert run_job(rt, rec.id) == "cancelled"
    assert rt.store.get(rec.id).params.interpolation == "minterpolate"
