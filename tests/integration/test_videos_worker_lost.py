"""A job whose worker process dies is re-run on a fresh process, and one that runs out of attempts
fails with the same effects as any failure (the attempt cap itself: unit tests)."""

from __future__ import annotations

import base64
import io
import os
import signal
from typing import Any

import httpx
import pytest
import redis
from PIL import Image
from standardwebhooks.webhooks import Webhook

from app.core.webhook_sign import generate_secret
from tests.sec_support import webhook_receiver
from tests.service_support import ServiceProcess, _spawn, service_env, wait_for, wait_status

pytestmark = pytest.mark.integration

MODEL = "tiny-i2v-a14b"  # its own queue: the session worker is not involved


def _job_body() -> dict[str, Any]:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(buf, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {
        "prompt": "lost",
        "model": MODEL,
        "num_inference_steps": 20,
        "input_reference": {"image_url": image},
    }


def _kill_child_at_step_2(client: httpx.Client, r: redis.Redis, worker: ServiceProcess, vid: str) -> None:
    wait_for(lambda: client.get(f"/v1/videos/{vid}").json()["step"] >= 2, 60, "step 2")
    os.kill(int(r.hget(f"wanserve:worker:{worker.worker_id}", "pid")), signal.SIGKILL)  # the prefork child


def test_killed_worker_child_is_requeued_and_completes(
    client: httpx.Client, worker_factory, redis_url
) -> None:
    w = worker_factory(MODEL, max_attempts=2, debug_step_delay_s=0.05)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    vid = client.post("/v1/videos", json=_job_body()).json()["id"]
    _kill_child_at_step_2(client, r, w, vid)
    done = wait_status(client, vid, {"completed", "failed"}, timeout=120)
    assert done["status"] == "completed" and done["attempts"] == 2, done
    assert done["step"] == 20


def test_failure_after_a_lost_worker_sends_its_webhook_and_schedules_clean_up(
    worker_factory, gateway_factory, redis_url, service_data_dir
) -> None:
    """The Celery parent fails the job whose child was killed on its last attempt: the job's
    signed `video.failed` webhook is delivered and its assets are scheduled for deletion, as for a
    failure anywhere else."""
    secret = generate_secret()
    hooks = {"webhook_secret": secret, "webhook_allow_http": True, "webhook_allow_private": True}
    w = worker_factory(MODEL, max_attempts=1, debug_step_delay_s=0.05, **hooks)
    gw = gateway_factory(poll_after_ms=200, **hooks)
    env = service_env(redis_url, service_data_dir, **hooks)
    cmd = ["-m", "app.cli.main", "webhooks", "--concurrency", "2"]
    delivery = _spawn("webhooks", cmd, env, service_data_dir / "logs")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with webhook_receiver() as receiver, httpx.Client(base_url=str(gw.url), timeout=30) as client:
            vid = client.post("/v1/videos", json={**_job_body(), "webhook_url": receiver.url}).json()["id"]
            _kill_child_at_step_2(client, r, w, vid)
            done = wait_status(client, vid, {"completed", "failed"}, timeout=120)
            assert done["status"] == "failed" and done["error"]["code"] == "worker_lost", done
            got = receiver.wait_for(1, timeout=60)
            assert got, f"no webhook delivered; webhook worker log:\n{delivery.log()}"
            payload = Webhook(secret).verify(got[0].body, got[0].headers)
            assert payload["type"] == "video.failed" and payload["data"]["id"] == vid
            assert payload["data"]["error"]["code"] == "worker_lost"
            expiry = r.zscore("wanserve:asset_expiry", vid)
            assert expiry is not None and expiry == pytest.approx(done["expires_at"], abs=1.0)
    finally:
        delivery.stop()
