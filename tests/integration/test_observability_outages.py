"""Observability and Redis outages against a real gateway + worker on a private, append-only Redis
`/metrics` reflects the worker's events (counters kept in Redis), JSON logs carry the
request id (returned as ``X-Request-ID``) and the job id, the admin view lists live workers; and a
Redis stopped and restarted under the live gateway gives 503s, then recovery with nothing lost.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.reliability_support import AofRedis, Stack, json_lines, open_stack
from tests.service_support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = open_stack(tmp_path_factory.mktemp("rel-service"), redis=AofRedis(), redis_timeout_s=1)
    s.worker(debug_step_delay_s=0.0)
    yield s
    s.close()


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(got.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in metrics:\n{text}")


def test_metrics_logs_request_id_and_admin_view(stack: Stack) -> None:
    c = stack.client
    sub = c.post(
        "/v1/videos",
        json={"prompt": "observed", "num_inference_steps": 3},
        headers={"X-Request-ID": "req-submit-1"},
    )
    assert sub.status_code == 202 and sub.headers["x-request-id"] == "req-submit-1"
    vid = sub.json()["id"]
    done = stack.wait(vid, {"completed", "failed", "cancelled"})
    assert done["status"] == "completed", done
    assert abs(done["expires_at"] - (done["completed_at"] + 7 * 86400)) <= 2  # retention_s default

    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = r.text
    assert _metric(m, "wanserve_jobs_total", status="completed", error_code="") >= 1
    for stage in ("queue_wait", "text_encoding", "denoising_step", "decoding", "encoding", "upload"):
        assert _metric(m, "wanserve_stage_duration_seconds_count", stage=stage) >= 1, stage
    assert _metric(m, "wanserve_stage_duration_seconds_count", stage="denoising_step") >= 3
    assert _metric(m, "wanserve_queue_depth", model="tiny-ti2v") == 0
    assert _metric(m, "wanserve_queue_oldest_age_seconds", model="tiny-ti2v") == 0
    assert _metric(m, "wanserve_workers", model="tiny-ti2v") == 1
    assert _metric(m, "wanserve_workers_ready", model="tiny-ti2v") == 1
    assert "wanserve_webhook_deliveries_total" in m or "wanserve_webhook_deliveries" in m

    # request id: echoed when given, minted when not; in the gateway's JSON log with the job id
    r = c.get(f"/v1/videos/{vid}", headers={"X-Request-ID": "req-test-123"})
    assert r.headers["x-request-id"] == "req-test-123"
    minted = c.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", minted)
    assert c.get("/healthz", headers={"X-Request-ID": "bad id <x>"}).headers["x-request-id"] != "bad id <x>"

    def logged() -> bool:
        lines = json_lines(stack.gateway.log_path.read_text(errors="replace"))
        return any(x.get("request_id") == "req-test-123" and x.get("job_id") == vid for x in lines)

    wait_for(logged, 10, "gateway JSON log line with request_id and job_id")

    def worker_logged() -> bool:
        lines = json_lines(stack.workers[0].log_path.read_text(errors="replace"))
        return any(
            x.get("job_id") == vid and x.get("request_id") == "req-submit-1" and "completed" in x["msg"]
            for x in lines
        )

    wait_for(worker_logged, 10, "worker JSON log line with the job id and the submission's request id")

    rows = c.get("/v1/admin/workers").json()["data"]
    assert len(rows) == 1
    w = rows[0]
    assert w["model"] == "tiny-ti2v" and w["device"] == "cpu" and w["state"] == "ready"
    assert w["current_job"] is None and w["resident_memory_bytes"] > 10_000_000
    assert w["last_heartbeat_age_s"] < 5 and w["id"] == stack.workers[0].worker_id


def test_redis_restart_503_then_recovers_with_nothing_lost(stack: Stack) -> None:
    c = stack.client
    vid = stack.submit(num_inference_steps=2)
    assert stack.wait(vid, {"completed", "failed", "cancelled"})["status"] == "completed"

    stack.redis.stop()
    for method, path, kw in [
        ("POST", "/v1/videos", {"json": {"prompt": "x"}}),
        ("GET", f"/v1/videos/{vid}", {}),
        ("GET", "/v1/videos", {}),
        ("GET", "/metrics", {}),
        ("GET", "/readyz", {}),
    ]:
        t0 = time.monotonic()
        r = c.request(method, path, **kw)
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert time.monotonic() - t0 < 6, path
    assert c.get("/healthz").status_code == 200

    stack.redis.start()  # same port, same append-only file

    def back() -> bool:
        return c.get(f"/v1/videos/{vid}").status_code == 200

    wait_for(back, 30, "gateway recovered")
    assert stack.get(vid)["status"] == "completed"  # the accepted job survived the restart
    assert c.get(f"/v1/videos/{vid}/content").status_code == 200
    wait_for(lambda: c.get("/readyz").status_code == 200, 30, "worker heartbeats back")
    nxt = stack.submit(num_inference_steps=2)
    done = stack.wait(nxt, {"completed", "failed", "cancelled"}, timeout=60)
    assert done["status"] == "completed", done


def test_no_5xx_while_redis_flaps_for_reads(stack: Stack) -> None:
    """Every answer during an outage is a clean 503 problem+json, never a 500."""
    c = stack.client
    stack.redis.stop()
    try:
        for path in ("/v1/videos/video_0123", "/v1/admin/workers", "/v1/models"):
            r = c.get(path)
            assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")
    finally:
        stack.redis.start()
    wait_for(lambda: c.get("/v1/videos").status_code == 200, 30, "recovered")
    with httpx.Client(base_url=stack.gateway.url or "", timeout=10) as fresh:
        assert fresh.get("/readyz").status_code in (200, 503)


def test_admin_view_needs_a_key_when_auth_is_on(stack: Stack) -> None:
    import asyncio

    from redis.asyncio import Redis

    from app.core.apikeys import ApiKeyStore
    from tests.service_support import start_gateway

    gw = start_gateway(stack.redis.url, stack.data_dir, auth=True)
    try:

        async def make_key(name: str, admin: bool) -> str:
            r = Redis.from_url(stack.redis.url, decode_responses=True)
            try:
                return (await ApiKeyStore(r).create(name, admin=admin))[1]
            finally:
                await r.aclose()

        token = asyncio.run(make_key("reliability-admin", True))
        tenant = asyncio.run(make_key("reliability-tenant", False))
        with httpx.Client(base_url=gw.url or "", timeout=10) as c:
            assert c.get("/v1/admin/workers").status_code == 401
            # a tenant's key must not see every worker's current job (another tenant's id)
            denied = c.get("/v1/admin/workers", headers={"Authorization": f"Bearer {tenant}"})
            assert denied.status_code == 403 and "admin" in denied.json()["detail"]
            auth = {"Authorization": f"Bearer {token}"}
            r = c.get("/v1/admin/workers", headers=auth)
            assert r.status_code == 200 and r.headers["x-request-id"]
            # (the worker's heartbeat may still be catching up after the Redis restarts above)
            wait_for(lambda: len(c.get("/v1/admin/workers", headers=auth).json()["data"]) == 1, 15, "worker")
    finally:
        gw.stop()
