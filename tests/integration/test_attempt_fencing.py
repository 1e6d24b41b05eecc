"""Attempt fencing: a paused worker never touches a newer attempt's job.

Worker A is frozen (SIGSTOP on its whole process group, like a long GC pause or a frozen VM) past
its lease; the reaper requeues the job; worker B completes it; A wakes (SIGCONT). A's writes carry
its attempt token and the atomic scripts refuse them as stale, so A abandons the job without
deleting anything: the job stays ``completed`` and its video is still served.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.integration.test_lost_workers_shutdown import STEPS, _stored_files
from tests.reliability_support import Stack, open_stack
from tests.service_support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = open_stack(tmp_path_factory.mktemp("rel-fencing"), max_attempts=3)
    yield s
    s.close()


def test_paused_worker_never_deletes_the_video_a_newer_attempt_completed(stack: Stack) -> None:
    paused = stack.worker(debug_step_delay_s=0.2, max_attempts=3)
    vid = stack.submit(num_inference_steps=STEPS, seed=11)
    stack.wait_running_on(vid, paused, step=3)
    os.killpg(paused.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: stack.get(vid)["worker_id"] is None, 30, "reaper requeue of the paused job")
        fresh = stack.worker(debug_step_delay_s=0.0, max_attempts=3)
        done = stack.wait(vid, {"completed", "failed", "cancelled"}, timeout=120)
        assert done["status"] == "completed" and done["worker_id"] == fresh.worker_id, done
    finally:
        os.killpg(paused.pid, signal.SIGCONT)
    # the paused attempt resumes mid-step: give it time to reach its next step and give up
    time.sleep(3)
    assert paused.alive(), paused.log()
    after = stack.get(vid)
    assert after["status"] == "completed" and after["worker_id"] == fresh.worker_id, after
    stored = _stored_files(stack.data_dir, vid)
    assert stored == ["spritesheet.webp", "thumbnail.webp", "video.mp4"], paused.log()[-3000:]
    r = stack.client.get(f"/v1/videos/{vid}/content")
    assert r.status_code == 200 and r.content[4:8] == b"ftyp"
    assert "a newer attempt" in paused.log() or "lease lost" in paused.log()


def test_cancel_answered_202_after_the_last_step_ends_cancelled(stack: Stack) -> None:
    """Defect 8: a cancel that lands between the last denoising step and the completion."""
    w = stack.worker(debug_step_delay_s=0.05)
    late_202 = 0
    try:
        for i in range(6):
            vid = stack.submit(num_inference_steps=3, seed=i)

            def at_last_step(vid: str = vid) -> bool:
                b = stack.get(vid)
                return b["status"] == "completed" or (b["total_steps"] > 0 and b["step"] >= b["total_steps"])

            wait_for(at_last_step, 90, f"{vid} past its last step", interval=0.005)
            r = stack.client.post(f"/v1/videos/{vid}/cancel")
            final = stack.wait(vid, {"completed", "failed", "cancelled"}, timeout=60)
            if r.status_code == 202:
                late_202 += 1
                assert final["status"] == "cancelled", (r.json(), final)
                assert stack.client.get(f"/v1/videos/{vid}/content").status_code in (404, 409)
            else:
                assert r.status_code == 409 and final["status"] == "completed", (r.text, final)
    finally:
        w.kill()
    assert late_202 >= 1, "no cancel landed after the last step: the race was not exercised"
