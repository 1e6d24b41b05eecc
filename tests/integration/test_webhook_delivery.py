"""Webhook delivery: signatures verified by the `standardwebhooks` package, retry schedule,
Retry-After, 410, no redirects, best-effort progress, the delivery log, and a real Celery worker."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from redis import Redis
from standardwebhooks.webhooks import Webhook

from app.core import webhooks as wh
from app.core.webhook_sign import generate_secret
from tests.sec_support import Received, redis_server, webhook_receiver
from worker.webhooks import attempt_delivery, backoff_delay, parse_retry_after

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture()
def redis(redis_url: str) -> Iterator[Redis]:
    r = Redis.from_url(redis_url)
    r.flushdb()
    yield r
    r.close()


SECRET = generate_secret()
CFG = wh.WebhookConfig(
    secrets=(SECRET,),
    allow_http=True,
    allow_private=True,
    timeout_s=2.0,
    max_attempts=4,
    backoff_base_s=0.01,
    backoff_factor=2.0,
)


def verify(rec: Received, secret: str = SECRET) -> dict[str, object]:
    return Webhook(secret).verify(rec.body, rec.headers)  # type: ignore[no-any-return]


def deliver_all(msg: dict[str, object], redis: Redis, cfg: wh.WebhookConfig = CFG) -> list[str]:
    """Run attempts like the Celery task would, without sleeping; returns the outcome statuses."""
    statuses = []
    for attempt in range(1, 50):
        out = attempt_delivery(msg, attempt, cfg, redis, rng=random.Random(0))
        statuses.append(out.status)
        if out.retry_in_s is None:
            break
    return statuses


def test_signed_delivery_verified_by_standardwebhooks(redis: Redis) -> None:
    with webhook_receiver() as rec:
        msg = wh.build_message("video_1", rec.url, "completed", {"id": "video_1", "status": "completed"})
        assert deliver_all(msg, redis) == ["delivered"]
        payload = verify(rec.requests[0])
        assert payload["type"] == "video.completed"
        assert payload["data"] == {"id": "video_1", "status": "completed"}  # type: ignore[comparison-overlap]
        assert rec.requests[0].headers["webhook-id"] == msg["id"]
        assert rec.requests[0].headers["content-type"] == "application/json"
        log = wh.list_deliveries_sync(redis, "video_1")
        assert (
            len(log) == 1 and log[0]["status"] == "delivered" and log[0]["attempts"][0]["status_code"] == 200
        )


def test_retry_schedule_fail_then_recover_same_id_fresh_signature(redis: Redis) -> None:
    with webhook_receiver() as rec:
        rec.responder = lambda n, r: (503, {}, b"down") if n <= 2 else (200, {}, b"ok")
        msg = wh.build_message("video_2", rec.url, "failed", {"id": "video_2"})
        assert deliver_all(msg, redis) == ["retrying", "retrying", "delivered"]
        assert len({r.headers["webhook-id"] for r in rec.requests}) == 1
        assert len({r.body for r in rec.requests}) == 1
        for r in rec.requests:
            verify(r)
        (entry,) = wh.list_deliveries_sync(redis, "video_2")
        assert [a["status_code"] for a in entry["attempts"]] == [503, 503, 200]
        assert entry["attempt_count"] == 3 and entry["status"] == "delivered"


@pytest.mark.parametrize(
    "status,expected",
    [
        (410, ["gone"]),
        (400, ["failed"]),
        (301, ["failed"]),
        (429, ["retrying", "retrying", "retrying", "failed"]),
        (500, ["retrying", "retrying", "retrying", "failed"]),
    ],
)
def test_status_handling(redis: Redis, status: int, expected: list[str]) -> None:
    with webhook_receiver() as rec:
        rec.responder = lambda n, r: (status, {"location": "http://127.0.0.1:1/"}, b"")
        msg = wh.build_message("video_3", rec.url, "completed", {})
        assert deliver_all(msg, redis) == expected
        assert len(rec.requests) == len(expected)  # redirects are never followed


def test_retry_after_honoured_and_total_time_cap(redis: Redis) -> None:
    with webhook_receiver() as rec:
        rec.responder = lambda n, r: (429, {"retry-after": "30"}, b"")
        msg = wh.build_message("video_4", rec.url, "completed", {})
        out = attempt_delivery(msg, 1, CFG, redis)
        assert out.status == "retrying" and out.retry_in_s == 30
        capped = wh.WebhookConfig(**{**CFG.__dict__, "max_total_s": 10.0})
        assert attempt_delivery(msg, 2, capped, redis).status == "failed"


def test_timeout_is_retried(redis: Redis) -> None:
    with webhook_receiver() as rec:

        def slow(n: int, r: Received) -> tuple[int, dict[str, str], bytes]:
            if n == 1:
                time.sleep(1.5)
            return 200, {}, b""

        rec.responder = slow
        cfg = wh.WebhookConfig(**{**CFG.__dict__, "timeout_s": 0.5})
        msg = wh.build_message("video_5", rec.url, "completed", {})
        assert deliver_all(msg, redis, cfg) == ["retrying", "delivered"]
        assert wh.list_deliveries_sync(redis, "video_5")[0]["attempts"][0]["error"] == "timeout"


def test_progress_is_best_effort_and_throttled(redis: Redis) -> None:
    with webhook_receiver() as rec:
        rec.responder = lambda n, r: (500, {}, b"")
        msg = wh.build_message("video_6", rec.url, "progress", {"progress": 50})
        assert msg["persistent"] is False
        assert deliver_all(msg, redis) == ["failed"]
    assert wh.progress_allowed(redis, "video_6", 5.0)
    assert not wh.progress_allowed(redis, "video_6", 5.0)
    assert wh.progress_allowed(redis, "video_7", 5.0)


def test_ssrf_refused_at_delivery(redis: Redis) -> None:
    strict = wh.WebhookConfig(secrets=(SECRET,))
    msg = wh.build_message("video_8", "https://169.254.169.254/latest/meta-data", "completed", {})
    assert deliver_all(msg, redis, strict) == ["failed"]
    assert "link-local" in wh.list_deliveries_sync(redis, "video_8")[0]["last_error"]


def test_backoff_schedule_and_retry_after_parsing() -> None:
    cfg = wh.WebhookConfig(backoff_base_s=5, backoff_factor=4, backoff_max_s=3600, jitter=0.2)
    rng = random.Random(1)
    delays = [backoff_delay(n, cfg, rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        base = min(3600, 5 * 4 ** (n - 1))
        assert 0.8 * base <= d <= 1.2 * base
    assert parse_retry_after("12") == 12
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert parse_retry_after("nonsense") is None


def test_event_filter_validation() -> None:
    assert wh.normalize_events(None) == ("completed", "failed", "cancelled")
    assert wh.normalize_events("progress,started") == ("started", "progress")
    with pytest.raises(ValueError, match="unknown webhook event"):
        wh.normalize_events(["completed", "exploded"])


def test_celery_worker_delivers_with_backoff(redis_url: str) -> None:
    env = {**os.environ, "SEC_BROKER": redis_url, "SEC_SECRETS": SECRET, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.integration.sec_webhook_worker",
            "worker",
            "-Q",
            wh.QUEUE,
            "-P",
            "solo",
            "-c",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with webhook_receiver() as rec:
            rec.responder = lambda n, r: (500, {}, b"") if n <= 2 else (200, {}, b"")
            client = Celery("sender", broker=redis_url)
            msg = wh.build_message("video_9", rec.url, "completed", {"id": "video_9"})
            wh.enqueue(client.send_task, msg)
            got = rec.wait_for(3, timeout=60)
            assert len(got) == 3, proc.stdout.read1().decode() if proc.stdout else ""  # type: ignore[union-attr]
            gaps = [b.at - a.at for a, b in zip(got, got[1:])]
            assert gaps[0] >= 0.3 and gaps[1] >= 0.6  # 0.4 s, then 0.8 s (±10 % jitter)
            assert verify(got[2])["type"] == "video.completed"
            r = Redis.from_url(redis_url)
            for _ in range(50):
                log = wh.list_deliveries_sync(r, "video_9")
                if log and log[0]["status"] == "delivered":
                    break
                time.sleep(0.1)
            assert log[0]["status"] == "delivered" and log[0]["attempt_count"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=20)
