"""Cancellation, pagination, validation errors, signed URLs, and 503 (not a hang) without Redis."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.core.storage import UrlSigner
from tests.service_support import SIGNING_KEY, RedisServer, wait_for, wait_status

pytestmark = pytest.mark.integration


def test_cancel_queued_and_running(client: httpx.Client) -> None:
    running = client.post("/v1/videos", json={"prompt": "long", "num_inference_steps": 50}).json()["id"]
    queued = client.post("/v1/videos", json={"prompt": "waits", "num_inference_steps": 2}).json()
    assert queued["status"] == "queued"
    wait_for(lambda: client.get(f"/v1/videos/{running}").json()["step"] >= 2, 60, "running job at step 2")
    q = client.get(f"/v1/videos/{queued['id']}").json()
    assert q["status"] == "queued" and q["queue_position"] >= 1

    c = client.post(f"/v1/videos/{queued['id']}/cancel")
    assert c.status_code == 200 and c.json()["status"] == "cancelled"

    r = client.post(f"/v1/videos/{running}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    step_at_cancel = client.get(f"/v1/videos/{running}").json()["step"]
    final = wait_status(client, running, {"cancelled", "completed", "failed"}, timeout=30)
    assert final["status"] == "cancelled"
    assert final["step"] <= step_at_cancel + 1 < 50  # stopped within one step
    with client.stream("GET", f"/v1/videos/{running}/events") as resp:
        lines = [line for line in resp.iter_lines() if line.startswith("event:")]
    assert lines[-1] == "event: video.cancelled" and lines.count("event: video.started") == 1

    # the queued job never ran, even after the worker freed up
    time.sleep(0.5)
    q = client.get(f"/v1/videos/{queued['id']}").json()
    assert q["status"] == "cancelled" and q["started_at"] is None and q["attempts"] == 0
    # the worker takes the next job
    nxt = client.post("/v1/videos", json={"prompt": "next", "num_inference_steps": 1}).json()["id"]
    assert wait_status(client, nxt, {"completed", "failed"})["status"] == "completed"
    # cancelling a finished job changes nothing
    again = client.post(f"/v1/videos/{nxt}/cancel")
    assert again.status_code == 409 and "completed" in again.json()["detail"]
    assert client.get(f"/v1/videos/{nxt}").json()["status"] == "completed"


def test_list_pagination(client: httpx.Client) -> None:
    mine = [
        client.post("/v1/videos", json={"prompt": f"p{i}", "num_inference_steps": 1}).json()["id"]
        for i in range(5)
    ]
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        page = client.get("/v1/videos", params=params).json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        seen += [v["id"] for v in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert len(seen) == len(set(seen))
    assert [v for v in seen if v in mine] == mine[::-1]  # newest first
    asc = client.get("/v1/videos", params={"order": "asc", "limit": 100}).json()["data"]
    assert [v["id"] for v in asc if v["id"] in mine] == mine
    bad = client.get("/v1/videos", params={"after": "video_missing"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "after"
    first = client.get("/v1/videos", params={"after": "", "limit": 100})  # an empty cursor is the first page
    assert first.status_code == 200 and first.json()["data"][0]["id"] == seen[0]
    for vid in mine:
        wait_status(client, vid, {"completed", "failed"})


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"prompt": "x", "model": "nope"}, "model", "served models: tiny-ti2v"),
        ({"prompt": "x", "size": "100x100"}, "size", "32x32"),
        ({"prompt": "x", "size": "huge"}, "size", "WIDTHxHEIGHT"),
        ({"prompt": "x", "num_frames": 6}, "num_frames", "4n+1"),
        ({"prompt": "x", "num_frames": 101}, "num_frames", "4n+1"),
        ({"prompt": "x", "num_frames": 5, "seconds": "1"}, "seconds", "not both"),
        ({"prompt": "x", "seconds": "-1"}, "seconds", "(0, 3600]"),
        # never silently clamped: beyond one clip is a long video, beyond the setting an error
        ({"prompt": "x", "seconds": "3000"}, "seconds", "WANSERVE_MAX_VIDEO_SECONDS"),
        ({"prompt": "x", "input_reference": {"file_id": "f"}}, "input_reference.file_id", "not supported"),
        ({"prompt": "x", "num_inference_steps": 999}, "num_inference_steps", "[1, 50]"),
        ({"prompt": "x", "guidance_scale_high_noise": 3}, "guidance_scale_high_noise", "one expert"),
        ({"prompt": "x", "sampler": "ddim"}, "sampler", ""),
        ({"prompt": "x", "bogus": 1}, "bogus", ""),
        ({"prompt": ""}, "prompt", ""),
        ({}, "prompt", ""),
        (
            {"prompt": "x", "input_reference": {"image_url": "https://example.com/a.png"}},
            "input_reference.image_url",
            "WANSERVE_IMAGE_URL_FETCH is off",
        ),
    ],
)
def test_validation_errors(client: httpx.Client, body: dict, field: str, needle: str) -> None:
    before = client.get("/v1/videos", params={"limit": 1}).json()["first_id"]
    r = client.post("/v1/videos", json=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert {"type", "title", "status", "detail", "errors"} <= set(problem) and problem["status"] == 400
    assert any(e["field"] == field and needle in e["reason"] for e in problem["errors"]), problem
    assert client.get("/v1/videos", params={"limit": 1}).json()["first_id"] == before  # nothing changed


def test_signed_url_tamper_and_expiry(client: httpx.Client) -> None:
    vid = client.post("/v1/videos", json={"prompt": "sig", "num_inference_steps": 1}).json()["id"]
    url = wait_status(client, vid, {"completed"})["urls"]["thumbnail"]
    assert httpx.get(url).status_code == 200
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    bad_sig = q["sig"][:-1] + ("0" if q["sig"][-1] != "0" else "1")
    assert httpx.get(base, params={**q, "sig": bad_sig}).status_code == 403
    assert httpx.get(base, params={**q, "expires": str(int(q["expires"]) + 100)}).status_code == 403
    other = base.replace("thumbnail.webp", "video.mp4")
    assert httpx.get(other, params=q).status_code == 403
    assert httpx.get(base).status_code == 403
    # a correctly signed but expired URL
    key = parts.path.removeprefix("/v1/files/")
    past = int(time.time()) - 5
    expired = httpx.get(base, params={"expires": past, "sig": UrlSigner(SIGNING_KEY).sign(key, past)})
    assert expired.status_code == 403 and "expired" in expired.json()["detail"]


def test_gateway_answers_503_when_redis_is_down(gateway_factory) -> None:
    dead = RedisServer().start()
    gw = gateway_factory(redis_url=dead.url, redis_timeout_s=1, enqueue_timeout_s=1)
    dead.stop()
    with httpx.Client(base_url=gw.url, timeout=15) as c:
        for method, path, kw in [
            ("POST", "/v1/videos", {"json": {"prompt": "x"}}),
            ("GET", "/v1/videos/video_x", {}),
            ("GET", "/v1/videos", {}),
            ("GET", "/v1/models", {}),
            ("GET", "/readyz", {}),
        ]:
            t0 = time.monotonic()
            r = c.request(method, path, **kw)
            assert r.status_code == 503, (path, r.text)
            assert time.monotonic() - t0 < 5, path
        assert c.get("/healthz").status_code == 200
    dead.close()
