"""End to end with real parts: redis-server, moto S3 server, a tiny-model Celery worker, the webhook
worker, two gateways (a main one and one with tight limits), and a local receiver verifying webhooks
with the independent `standardwebhooks` package.

Covers: a job with a webhook against S3 → verified signed `video.completed` whose data carries a
presigned URL that downloads the MP4; the delivery log route; cross-key isolation on every route;
auth refusals; idempotency; rate limits (requests, active jobs, global queue); input limits; CORS.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from PIL import Image
from standardwebhooks.webhooks import Webhook

from app.core.webhook_sign import generate_secret
from tests.integration.eco_support import decode_mp4
from tests.sec_support import (
    Receiver,
    create_api_key,
    free_port,
    moto_server,
    redis_server,
    wanserve_cli,
    webhook_receiver,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SECRET = generate_secret()
BUCKET = "wanserve-e2e"


@dataclass
class Stack:
    base: str  # main gateway
    tight: str  # gateway with tight limits and strict webhook rules
    env: dict[str, str]
    receiver: Receiver
    s3_endpoint: str


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(
    base: str, procs: list[subprocess.Popen[bytes]], logs: list[Path], timeout: float = 240
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p, lg in zip(procs, logs, strict=True):
            if p.poll() is not None:
                raise RuntimeError(f"{lg.name} exited:\n{lg.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("stack not ready:\n" + "\n".join(lg.read_text()[-2000:] for lg in logs))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("sec-e2e")
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(aws)
    with redis_server() as redis_url, moto_server() as s3, webhook_receiver() as rec:
        boto3.client("s3", endpoint_url=s3, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        port, tight_port = free_port(), free_port()
        env = (
            {k: v for k, v in os.environ.items() if not k.startswith("WANSERVE_")}
            | aws
            | {
                "PYTHONPATH": str(ROOT),
                "WANSERVE_REDIS_URL": redis_url,
                "WANSERVE_DATA_DIR": str(tmp / "data"),
                "WANSERVE_MODEL": "tiny-ti2v",
                "WANSERVE_STORAGE_URL": f"s3://{BUCKET}/e2e",
                "WANSERVE_S3_ENDPOINT_URL": s3,
                "WANSERVE_WEBHOOK_SECRET": SECRET,
                "WANSERVE_WEBHOOK_ALLOW_HTTP": "true",
                "WANSERVE_WEBHOOK_ALLOW_PRIVATE": "true",
                "WANSERVE_WEBHOOK_BACKOFF_BASE_S": "0.3",
                "WANSERVE_AUTH": "true",
                "WANSERVE_SIGNING_KEY": "e2e-signing-key",  # the placeholder is refused with auth on
                "WANSERVE_HOST": "127.0.0.1",
                "WANSERVE_PORT": str(port),
                "WANSERVE_DEBUG_STEP_DELAY_S": "0.25",
                "WANSERVE_TORCH_THREADS": "1",
            }
        )
        tight_env = env | {
            "WANSERVE_PORT": str(tight_port),
            "WANSERVE_WEBHOOK_ALLOW_HTTP": "false",
            "WANSERVE_WEBHOOK_ALLOW_PRIVATE": "false",
            "WANSERVE_RATE_LIMIT_REQUESTS": "5",
            "WANSERVE_MAX_ACTIVE_JOBS": "2",
            "WANSERVE_MAX_QUEUED_JOBS": "3",
            "WANSERVE_MAX_BODY_BYTES": "200000",
            "WANSERVE_CORS_ORIGINS": "https://app.example.com",
        }
        logs = [tmp / "worker.log", tmp / "webhooks.log", tmp / "gateway.log", tmp / "tight.log"]
        procs = [
            _spawn(["-m", "worker"], env | {"WANSERVE_WORKER_ID": "e2e-worker"}, logs[0]),
            _spawn(["-m", "app.cli.main", "webhooks"], env, logs[1]),
            _spawn(["-m", "app.cli.main", "gateway"], env, logs[2]),
            _spawn(["-m", "app.cli.main", "gateway"], tight_env, logs[3]),
        ]
        try:
            base, tight = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{tight_port}"
            _wait_ready(base, procs, logs)
            _wait_ready(tight, procs, logs)
            yield Stack(base, tight, env, rec, s3)
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()


def create_key(stack: Stack, name: str) -> dict[str, str]:
    token = create_api_key(stack.env, name)
    assert token.startswith("wsk_") and "\n" not in token
    return {"Authorization": f"Bearer {token}"}


def quick_key(stack: Stack, name: str) -> dict[str, str]:
    """A key created straight through the key store (the CLI path is covered by `create_key`)."""
    import asyncio

    from redis.asyncio import Redis

    from app.core.apikeys import ApiKeyStore

    async def make() -> str:
        r = Redis.from_url(stack.env["WANSERVE_REDIS_URL"])
        try:
            return (await ApiKeyStore(r).create(name))[1]
        finally:
            await r.aclose()

    return {"Authorization": f"Bearer {asyncio.run(make())}"}


def wait_status(base: str, vid: str, headers: dict[str, str], timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = httpx.get(f"{base}/v1/videos/{vid}", headers=headers).json()
        if v["status"] in ("completed", "failed", "cancelled"):
            return v  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise AssertionError(f"{vid} did not finish")


def test_webhook_with_s3_delivers_signed_completed_with_downloadable_mp4(stack: Stack) -> None:
    alice = create_key(stack, "alice")
    r = httpx.post(
        f"{stack.base}/v1/videos",
        headers=alice,
        json={
            "prompt": "a red fox",
            "webhook_url": stack.receiver.url,
            "webhook_events": ["started", "completed"],
        },
    )
    assert r.status_code == 202, r.text
    vid = r.json()["id"]
    deadline = time.monotonic() + 180
    completed = None
    while time.monotonic() < deadline and completed is None:
        for req in stack.receiver.wait_for(1, timeout=1):
            if json.loads(req.body)["type"] == "video.completed":
                completed = req
        time.sleep(0.2)
    assert completed is not None, "no video.completed webhook"
    payload = Webhook(SECRET).verify(completed.body, completed.headers)
    assert payload["data"]["id"] == vid and payload["data"]["status"] == "completed"
    types = [
        json.loads(q.body)["type"] for q in stack.receiver.requests if json.loads(q.body)["data"]["id"] == vid
    ]
    assert types == ["video.started", "video.completed"]
    url = payload["data"]["urls"]["video"]
    assert url.startswith(stack.s3_endpoint) and "X-Amz-Signature=" in url
    mp4 = httpx.get(url)
    assert mp4.status_code == 200 and mp4.content[4:8] == b"ftyp"
    frames, width, height, _ = decode_mp4(mp4.content)
    v = httpx.get(f"{stack.base}/v1/videos/{vid}", headers=alice).json()
    assert frames == v["parameters"]["num_frames"]
    assert (width, height) == (v["parameters"]["width"], v["parameters"]["height"])
    # a fresh presigned URL per GET; /content redirects to one
    assert v["urls"]["video"].startswith(stack.s3_endpoint)
    c = httpx.get(f"{stack.base}/v1/videos/{vid}/content", headers=alice)
    assert c.status_code == 302 and c.headers["location"].startswith(stack.s3_endpoint)
    # the delivery log is visible to the owner
    log = httpx.get(f"{stack.base}/v1/videos/{vid}/webhooks", headers=alice).json()["data"]
    done = [d for d in log if d["type"] == "video.completed"]
    assert done and done[0]["status"] == "delivered" and done[0]["attempts"][0]["status_code"] == 200
    # retention: the assets are scheduled for deletion at expires_at
    import redis as sync_redis

    score = sync_redis.Redis.from_url(stack.env["WANSERVE_REDIS_URL"]).zscore("wanserve:asset_expiry", vid)
    assert score is not None and abs(score - v["expires_at"]) <= 1
    # DELETE removes the stored objects at once
    assert httpx.delete(f"{stack.base}/v1/videos/{vid}", headers=alice).status_code == 200
    assert httpx.get(url).status_code == 404


def test_webhook_retried_until_receiver_recovers(stack: Stack) -> None:
    alice = {"Authorization": create_key(stack, "alice-retry")["Authorization"]}
    rec = stack.receiver
    calls = {"n": 0}

    def flaky(n: int, r: object) -> tuple[int, dict[str, str], bytes]:
        calls["n"] += 1
        return (503, {}, b"") if calls["n"] <= 2 else (200, {}, b"")

    rec.responder = flaky
    try:
        before = len(rec.requests)
        vid = httpx.post(
            f"{stack.base}/v1/videos", headers=alice, json={"prompt": "a fox", "webhook_url": rec.url}
        ).json()["id"]
        got = rec.wait_for(before + 3, timeout=180)[before:]
        assert len(got) == 3 and len({g.headers["webhook-id"] for g in got}) == 1
        Webhook(SECRET).verify(got[2].body, got[2].headers)
        for _ in range(40):
            log = httpx.get(f"{stack.base}/v1/videos/{vid}/webhooks", headers=alice).json()["data"]
            if log and log[0]["status"] == "delivered":
                break
            time.sleep(0.25)
        assert [a["status_code"] for a in log[0]["attempts"]] == [503, 503, 200]
    finally:
        rec.responder = lambda n, r: (200, {}, b"ok")


def test_cancel_sends_signed_cancelled_webhook(stack: Stack) -> None:
    key = quick_key(stack, "canceller")
    body = {"prompt": "cancel me", "webhook_url": stack.receiver.url, "webhook_events": "cancelled,failed"}
    vid = httpx.post(f"{stack.base}/v1/videos", headers=key, json=body).json()["id"]
    assert httpx.post(f"{stack.base}/v1/videos/{vid}/cancel", headers=key).status_code in (200, 202)
    deadline = time.monotonic() + 60
    mine: list[dict[str, object]] = []
    while time.monotonic() < deadline and not mine:
        for req in stack.receiver.wait_for(1, timeout=1):
            data = json.loads(req.body)
            if data["data"]["id"] == vid:
                mine.append(Webhook(SECRET).verify(req.body, req.headers))
        time.sleep(0.2)
    assert [m["type"] for m in mine] == ["video.cancelled"]


def test_cross_key_isolation_on_every_route(stack: Stack) -> None:
    owner, other = create_key(stack, "owner"), create_key(stack, "intruder")
    vid = httpx.post(f"{stack.base}/v1/videos", headers=owner, json={"prompt": "private fox"}).json()["id"]
    wait_status(stack.base, vid, owner)
    b = stack.base
    for method, path in [
        ("GET", f"/v1/videos/{vid}"),
        ("GET", f"/v1/videos/{vid}/content"),
        ("GET", f"/v1/videos/{vid}/content?variant=thumbnail"),
        ("GET", f"/v1/videos/{vid}/events"),
        ("GET", f"/v1/videos/{vid}/webhooks"),
        ("POST", f"/v1/videos/{vid}/cancel"),
        ("DELETE", f"/v1/videos/{vid}"),
    ]:
        r = httpx.request(method, b + path, headers=other)
        assert r.status_code == 404, (method, path, r.status_code)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert httpx.request(method, b + path).status_code == 401
        assert (
            httpx.request(method, b + path, headers={"Authorization": "Bearer wsk_nope"}).status_code == 401
        )
    listed = httpx.get(f"{b}/v1/videos", headers=other).json()["data"]
    assert vid not in [v["id"] for v in listed]
    assert vid in [v["id"] for v in httpx.get(f"{b}/v1/videos", headers=owner).json()["data"]]
    with httpx.stream("GET", f"{b}/v1/videos/{vid}/events", headers=owner, timeout=10) as ev:
        assert ev.status_code == 200
    # a revoked key is refused at once
    wanserve_cli(stack.env, "keys", "revoke", "intruder")
    assert httpx.get(f"{b}/v1/videos", headers=other).status_code == 401
    assert httpx.get(f"{b}/v1/videos", headers=owner).status_code == 200


def test_idempotency_key(stack: Stack) -> None:
    k1, k2 = create_key(stack, "idem-1"), create_key(stack, "idem-2")
    body = {"prompt": "same request", "seed": 7}
    h = k1 | {"Idempotency-Key": "order-42"}
    first = httpx.post(f"{stack.base}/v1/videos", headers=h, json=body)
    again = httpx.post(f"{stack.base}/v1/videos", headers=h, json=body)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    changed = httpx.post(f"{stack.base}/v1/videos", headers=h, json=body | {"seed": 8})
    assert changed.status_code == 400 and changed.json()["errors"][0]["field"] == "Idempotency-Key"
    other = httpx.post(f"{stack.base}/v1/videos", headers=k2 | {"Idempotency-Key": "order-42"}, json=body)
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    wait_status(stack.base, first.json()["id"], k1)
    wait_status(stack.base, other.json()["id"], k2)


def test_rate_limits(stack: Stack) -> None:
    t = stack.tight
    reader = create_key(stack, "reader")
    for i in range(5):
        r = httpx.get(f"{t}/v1/videos", headers=reader)
        assert r.status_code == 200 and r.headers["ratelimit-policy"] == '"requests";q=5;w=60'
        assert r.headers["x-ratelimit-remaining"] == str(4 - i)
    r = httpx.get(f"{t}/v1/videos", headers=reader)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.headers["ratelimit"].startswith('"requests";r=0')
    assert r.headers["content-type"].startswith("application/problem+json")
    # active jobs per key (2) and the global queue cap (3)
    busy, second, third = quick_key(stack, "busy"), quick_key(stack, "second"), quick_key(stack, "third")
    ids = []
    for _ in range(2):
        r = httpx.post(f"{t}/v1/videos", headers=busy, json={"prompt": "slow", "num_inference_steps": 4})
        assert r.status_code == 202, r.text
        ids.append((busy, r.json()["id"]))
    r = httpx.post(f"{t}/v1/videos", headers=busy, json={"prompt": "one too many"})
    assert r.status_code == 429 and "active" in r.json()["detail"] and "retry-after" in r.headers
    r = httpx.post(f"{t}/v1/videos", headers=second, json={"prompt": "fits the queue"})
    assert r.status_code == 202
    ids.append((second, r.json()["id"]))
    r = httpx.post(f"{t}/v1/videos", headers=third, json={"prompt": "queue full"})
    assert r.status_code == 429 and "queue" in r.json()["detail"]
    for h, vid in ids:  # through the main gateway: the tight one allows 5 requests a minute per key
        httpx.post(f"{stack.base}/v1/videos/{vid}/cancel", headers=h)
    for h, vid in ids:
        wait_status(stack.base, vid, h)
    assert httpx.post(f"{t}/v1/videos", headers=third, json={"prompt": "room again"}).status_code == 202


def test_input_limits_and_webhook_refusals(stack: Stack) -> None:
    t = stack.tight
    n = iter(range(1000))

    def post(headers: dict[str, str] | None = None, **kw: object) -> httpx.Response:
        key = quick_key(stack, f"limits-{next(n)}")  # a fresh key per call: the tight gateway allows 5/min
        return httpx.post(f"{t}/v1/videos", headers=key | (headers or {}), **kw)  # type: ignore[arg-type]

    def field_of(r: httpx.Response) -> str:
        return str(r.json()["errors"][0]["field"])

    r = post(content=b"{" + b" " * 300_000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413
    chunks = iter([b"{", b" " * 150_000, b" " * 150_000, b"}"])  # no Content-Length: counted while read
    r = post(content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
    r = post(json={"prompt": "x" * 5000})
    assert r.status_code == 400 and field_of(r) == "prompt"
    r = post(json={"prompt": "ok", "metadata": {"k": "v" * 5000}})
    assert r.status_code == 400 and field_of(r) == "metadata"
    noisy = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(noisy, format="PNG")
    truncated = noisy.getvalue()[: len(noisy.getvalue()) // 2]
    for data, reason in [(b"not an image", "recognised"), (truncated, "corrupt")]:
        r = post(data={"prompt": "img"}, files={"input_reference": ("x.png", data, "image/png")})
        assert r.status_code == 400 and field_of(r) == "input_reference" and reason in r.text
    gif = io.BytesIO()
    Image.new("RGB", (32, 32)).save(gif, format="GIF")
    r = post(data={"prompt": "img"}, files={"input_reference": ("x.gif", gif.getvalue(), "image/gif")})
    assert r.status_code == 400 and "not allowed" in r.text
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, format="PNG")
    r = post(data={"prompt": "img"}, files={"input_reference": ("b.png", bomb.getvalue(), "image/png")})
    assert r.status_code == 400 and "pixels" in r.text
    for url, reason in [
        ("http://example.com/hook", "https"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.0.0.5/hook", "private"),
        ("https://[::1]/hook", "loopback"),
        ("https://[fd00::1]/hook", "unique-local"),
        ("https://[::ffff:127.0.0.1]/hook", "IPv4-mapped"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://localhost/hook", "loopback"),
    ]:
        r = post(json={"prompt": "hook", "webhook_url": url})
        assert r.status_code == 400 and field_of(r) == "webhook_url" and reason in r.text, (url, r.text)
    r = post(json={"prompt": "hook", "webhook_url": "https://8.8.8.8/h", "webhook_events": ["exploded"]})
    assert r.status_code == 400 and field_of(r) == "webhook_events"


def test_cors(stack: Stack) -> None:
    pre = httpx.options(
        f"{stack.tight}/v1/videos",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
    bad = httpx.options(
        f"{stack.tight}/v1/videos",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in bad.headers
    # the main gateway allows no other origins
    r = httpx.get(f"{stack.base}/healthz", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in r.headers
