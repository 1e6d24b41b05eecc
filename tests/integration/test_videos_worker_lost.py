"""A job whose worker process dies is re-run, and fails as `worker_lost` after the attempt cap."""

from __future__ import annotations

import os
import signal

import httpx
import pytest
import redis

from tests.service_support import wait_for, wait_status

pytestmark = pytest.mark.integration

MODEL = "tiny-i2v-a14b"  # its own queue: the session worker is not involved


def _kill_child_at_step(client: httpx.Client, r: redis.Redis, worker_id: str, vid: str, step: int) -> None:
    wait_for(lambda: client.get(f"/v1/videos/{vid}").json()["step"] >= step, 60, f"step {step}")
    os.kill(int(r.hget(f"wanserve:worker:{worker_id}", "pid")), signal.SIGKILL)


def test_killed_worker_child_requeues_then_caps(client: httpx.Client, worker_factory, redis_url) -> None:
    w = worker_factory(MODEL, max_attempts=2, debug_step_delay_s=0.05)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
    body = {
        "prompt": "lost",
        "model": MODEL,
        "num_inference_steps": 30,
        "input_reference": {"image_url": png},
    }

    vid = client.post("/v1/videos", json=body).json()["id"]
    _kill_child_at_step(client, r, w.worker_id, vid, 2)
    done = wait_status(client, vid, {"completed", "failed"}, timeout=120)
    assert done["status"] == "completed" and done["attempts"] == 2, done

    vid = client.post("/v1/videos", json=body).json()["id"]
    _kill_child_at_step(client, r, w.worker_id, vid, 2)
    wait_for(lambda: client.get(f"/v1/videos/{vid}").json()["attempts"] == 2, 120, "second attempt")
    _kill_child_at_step(client, r, w.worker_id, vid, 2)
    failed = wait_status(client, vid, {"completed", "failed"}, timeout=120)
    assert failed["status"] == "failed" and failed["error"]["code"] == "worker_lost", failed
