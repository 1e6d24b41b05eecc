"""A job whose worker process dies is re-run on a fresh process (the attempt cap: unit tests)."""

from __future__ import annotations

import base64
import io
import os
import signal

import httpx
import pytest
import redis
from PIL import Image

from tests.service_support import wait_for, wait_status

pytestmark = pytest.mark.integration

MODEL = "tiny-i2v-a14b"  # its own queue: the session worker is not involved


def test_killed_worker_child_is_requeued_and_completes(
    client: httpx.Client, worker_factory, redis_url
) -> None:
    w = worker_factory(MODEL, max_attempts=2, debug_step_delay_s=0.05)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(buf, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    body = {
        "prompt": "lost",
        "model": MODEL,
        "num_inference_steps": 20,
        "input_reference": {"image_url": image},
    }

    vid = client.post("/v1/videos", json=body).json()["id"]
    wait_for(lambda: client.get(f"/v1/videos/{vid}").json()["step"] >= 2, 60, "step 2")
    os.kill(int(r.hget(f"wanserve:worker:{w.worker_id}", "pid")), signal.SIGKILL)  # the prefork child
    done = wait_status(client, vid, {"completed", "failed"}, timeout=120)
    assert done["status"] == "completed" and done["attempts"] == 2, done
    assert done["step"] == 20
