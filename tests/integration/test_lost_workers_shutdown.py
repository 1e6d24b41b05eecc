"""Lost workers and shutdown, with real processes.

- SIGKILL of a whole worker (parent + pool child, like power loss) at step k of n: the gateway's
  reaper notices the silent lease within lease TTL + reaper interval, requeues the job, a second
  worker completes it; output stored once under the job id's keys; attempts recorded; after
  ``max_attempts`` lost deliveries the job fails as ``worker_lost``.
- SIGTERM: no new job is taken; a job that outlives the grace period is requeued (not counted as a
  lost attempt) and finished by another worker; a job that fits in the grace period finishes;
  the worker exits 0 either way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.storage import job_prefix
from tests.reliability_support import (
    LEASE_TTL_S,
    REAPER_INTERVAL_S,
    Stack,
    exit_code,
    open_stack,
    sigkill_group,
    sigterm,
)
from tests.service_support import wait_for

pytestmark = pytest.mark.integration

SLOW = {"debug_step_delay_s": 0.2, "max_attempts": 2}  # 50 steps ≈ 10 s: time to kill mid-run
STEPS = 50


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = open_stack(tmp_path_factory.mktemp("rel-workers"), max_attempts=2)
    yield s
    s.close()


def _stored_files(data_dir: Path, vid: str) -> list[str]:
    root = data_dir / "objects" / job_prefix(vid)
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def test_sigkill_mid_run_is_reaped_requeued_and_completed_then_capped(stack: Stack) -> None:
    w1 = stack.worker(**SLOW)
    vid = stack.submit(num_inference_steps=STEPS, seed=7)
    stack.wait_running_on(vid, w1, step=3)
    sigkill_group(w1)
    killed_at = time.monotonic()
    # the reaper clears the dead worker from the record and requeues, without waiting for the
    # broker's visibility timeout (6 h by default)
    wait_for(lambda: stack.get(vid)["worker_id"] is None, 30, "reaper requeue")
    detected_s = time.monotonic() - killed_at
    assert detected_s < LEASE_TTL_S + REAPER_INTERVAL_S + 5, detected_s
    assert stack.get(vid)["status"] == "in_progress"

    w2 = stack.worker(debug_step_delay_s=0.1, max_attempts=2)
    done = stack.wait(vid, {"completed", "failed", "cancelled"}, timeout=120)
    assert done["status"] == "completed", done
    assert done["attempts"] == 2 and done["worker_id"] == w2.worker_id
    assert done["step"] == STEPS
    # one copy, job-id keys
    assert _stored_files(stack.data_dir, vid) == ["spritesheet.webp", "thumbnail.webp", "video.mp4"]
    assert stack.client.get(f"/v1/videos/{vid}/content").status_code == 200

    # the cap: lost on w2, requeued, lost again on w3 -> failed as worker_lost (max_attempts=2)
    vid2 = stack.submit(num_inference_steps=STEPS)
    stack.wait_running_on(vid2, w2, step=2)
    sigkill_group(w2)
    w3 = stack.worker(**SLOW)
    stack.wait_running_on(vid2, w3, step=2)
    assert stack.get(vid2)["attempts"] == 2
    sigkill_group(w3)
    failed = stack.wait(vid2, {"completed", "failed", "cancelled"}, timeout=60)
    assert failed["status"] == "failed" and failed["error"]["code"] == "worker_lost", failed
    assert "2 times" in failed["error"]["message"]
    metrics = stack.client.get("/metrics").text
    assert 'wanserve_reaped_jobs_total{outcome="requeued"}' in metrics
    assert 'wanserve_jobs_total{error_code="worker_lost",status="failed"} 1.0' in metrics


def test_sigterm_requeues_after_grace_and_finishes_within_grace(stack: Stack) -> None:
    short = stack.worker(debug_step_delay_s=0.6, shutdown_grace_s=1.0)  # 50 steps ≈ 30 s
    vid = stack.submit(num_inference_steps=STEPS)
    stack.wait_running_on(vid, short, step=2)
    other = stack.worker(debug_step_delay_s=0.05, shutdown_grace_s=60)
    assert stack.get(vid)["worker_id"] == short.worker_id
    t0 = time.monotonic()
    sigterm(short)
    assert exit_code(short, timeout=30) == 0, short.log()
    assert time.monotonic() - t0 < 1.0 + 10, "exited within grace + a step + shutdown"
    done = stack.wait(vid, {"completed", "failed", "cancelled"}, timeout=120)
    assert done["status"] == "completed" and done["worker_id"] == other.worker_id, done
    assert done["attempts"] == 1, done  # a graceful requeue is not a lost attempt

    # a job that fits the grace period is finished by the terminating worker; nothing new is taken
    vid2 = stack.submit(num_inference_steps=30)
    stack.wait_running_on(vid2, other, step=2)
    sigterm(other)
    time.sleep(0.5)
    vid3 = stack.submit(num_inference_steps=2)
    assert exit_code(other, timeout=60) == 0, other.log()
    finished = stack.get(vid2)
    assert finished["status"] == "completed" and finished["worker_id"] == other.worker_id, finished
    time.sleep(0.5)
    waiting = stack.get(vid3)
    assert waiting["status"] == "queued" and waiting["attempts"] == 0, waiting
