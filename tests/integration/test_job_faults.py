"""Failures inside a running job, with one real worker that must keep serving after each:
a simulated device out-of-memory raised inside the pipeline, the per-job time limit, cancellation
(queued never starts, running stops within one step) — and retention of finished jobs and assets.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from app.core.storage import job_key
from tests.reliability_support import Stack, open_stack
from tests.service_support import wait_for

pytestmark = pytest.mark.integration

OOM_MARKER = "simulate-oom"
RETENTION_S = 3  # the gateway's: a job cancelled while queued expires this long after


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = open_stack(
        tmp_path_factory.mktemp("rel-faults"), retention_s=RETENTION_S, retention_sweep_interval_s=0.5
    )
    s.worker(debug_step_delay_s=0.3, debug_oom_marker=OOM_MARKER, job_time_limit_s=10)
    yield s
    s.close()


def _worker_state(stack: Stack) -> dict[str, object]:
    rows = stack.client.get("/v1/admin/workers").json()["data"]
    assert len(rows) == 1, rows
    row: dict[str, object] = rows[0]
    return row


def _serves_next(stack: Stack, worker_id: str) -> None:
    nxt = stack.submit(num_inference_steps=1)
    done = stack.wait(nxt, {"completed", "failed", "cancelled"})
    assert done["status"] == "completed" and done["worker_id"] == worker_id, done


def test_simulated_oom_fails_the_job_and_the_worker_keeps_serving(stack: Stack) -> None:
    vid = stack.submit(prompt=f"a cat {OOM_MARKER}", num_inference_steps=6)
    failed = stack.wait(vid, {"completed", "failed", "cancelled"})
    assert failed["status"] == "failed" and failed["error"]["code"] == "out_of_memory", failed
    msg = failed["error"]["message"]
    assert "out of memory" in msg and "32x32" in msg and "smaller" in msg, msg
    assert failed["step"] == 1  # raised inside the pipeline at step 2, before it was recorded
    wait_for(lambda: _worker_state(stack)["state"] == "ready", 10, "worker ready again")
    _serves_next(stack, str(failed["worker_id"]))


def test_time_limit_fails_with_timeout_and_frees_the_worker(stack: Stack) -> None:
    t0 = time.monotonic()
    vid = stack.submit(num_inference_steps=50)  # 50 x 0.3 s > the 9 s soft limit
    failed = stack.wait(vid, {"completed", "failed", "cancelled"}, timeout=60)
    assert failed["status"] == "failed" and failed["error"]["code"] == "timeout", failed
    assert "10s" in failed["error"]["message"]
    assert 8 < time.monotonic() - t0 < 40
    assert failed["step"] < 50
    _serves_next(stack, str(failed["worker_id"]))


def test_cancel_running_stops_within_a_step_and_queued_never_starts(stack: Stack) -> None:
    running = stack.submit(num_inference_steps=30)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    queued = stack.submit(num_inference_steps=2, input_reference={"image_url": image})
    wait_for(lambda: stack.get(running)["step"] >= 2, 60, "running at step 2")
    worker_id = stack.get(running)["worker_id"]

    c = stack.client.post(f"/v1/videos/{queued}/cancel")
    assert c.status_code == 200 and c.json()["status"] == "cancelled"
    expires_at = c.json()["expires_at"]
    assert abs(expires_at - (time.time() + RETENTION_S)) < 3  # expires_at says when

    r = stack.client.post(f"/v1/videos/{running}/cancel")
    assert r.status_code == 202
    at_cancel = stack.get(running)["step"]
    final = stack.wait(running, {"completed", "failed", "cancelled"}, timeout=30)
    assert final["status"] == "cancelled" and final["step"] <= at_cancel + 1, final
    w = _worker_state(stack)
    wait_for(lambda: _worker_state(stack)["current_job"] is None, 10, "worker released the job")
    assert w["resident_memory_bytes"] and w["device"] == "cpu"
    _serves_next(stack, str(worker_id))
    q = stack.get(queued)
    assert q["status"] == "cancelled" and q["started_at"] is None and q["attempts"] == 0

    # retention: the cancelled job's record and its stored input image expire after RETENTION_S
    input_file = stack.data_dir / "objects" / job_key(queued, "input")
    assert input_file.exists()
    wait_for(lambda: stack.client.get(f"/v1/videos/{queued}").status_code == 404, 15, "record expired")
    wait_for(lambda: not input_file.exists(), 10, "input asset swept")
