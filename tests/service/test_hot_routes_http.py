"""`app.api.hot_routes`: the create and status routes served in front of the framework's stack give
the answers the full stack gives (status, body, headers), errors included, and only those two
requests take that way."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.api.hot_routes import HotRoutes, _route
from app.core.jobstore import encode_record, encode_values
from app.core.schemas import JobErrorInfo
from tests.service.conftest import Service
from tests.unit.test_jobstore import record

pytestmark = pytest.mark.anyio

JOB = {"prompt": "a red circle", "num_inference_steps": 2, "num_frames": 5, "size": "32x32"}
# fields that differ between two jobs made from the same request
VOLATILE = {"id", "created_at", "request_id", "seed", "deadline_at", "expires_at", "queue_position"}
VOLATILE_HEADERS = {
    "x-request-id",
    "content-length",
    "ratelimit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
}


def _clients(service: Service) -> tuple[httpx.AsyncClient, httpx.AsyncClient, list[str]]:
    """(through `HotRoutes`, through the full stack only, paths the full stack saw via the first)."""
    app: Any = service.client._transport.app  # type: ignore[attr-defined]
    stack = app.build_middleware_stack()
    assert isinstance(stack, HotRoutes)
    seen: list[str] = []

    async def full(scope: Any, receive: Any, send: Any) -> None:
        scope["app"] = app
        await stack.app(scope, receive, send)

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        seen.append(f"{scope['method']} {scope['path']}")
        await full(scope, receive, send)

    async def hot(scope: Any, receive: Any, send: Any) -> None:
        scope["app"] = app
        await HotRoutes(counted, app, stack.max_body_bytes)(scope, receive, send)

    base = "http://gateway.test"
    return (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=hot), base_url=base),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=full), base_url=base),
        seen,
    )


def _same(a: httpx.Response, b: httpx.Response) -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    ja, jb = a.json(), b.json()
    if isinstance(ja, dict) and "parameters" in ja:
        for body in (ja, jb):
            for k in VOLATILE:
                body.pop(k, None)
                body["parameters"].pop(k, None)
    assert ja == jb
    ha = {k: v for k, v in a.headers.items() if k not in VOLATILE_HEADERS}
    hb = {k: v for k, v in b.headers.items() if k not in VOLATILE_HEADERS}
    assert ha == hb
    assert a.headers.get("x-request-id") and b.headers.get("x-request-id")


async def test_create_and_get_answer_as_the_full_stack_does(service: Service) -> None:
    hot, full, seen = _clients(service)
    async with hot, full:
        a, b = await hot.post("/v1/videos", json=JOB), await full.post("/v1/videos", json=JOB)
        assert a.status_code == 202 and a.headers["openai-poll-after-ms"]
        _same(a, b)
        ga, gb = await hot.get(f"/v1/videos/{a.json()['id']}"), await full.get(f"/v1/videos/{a.json()['id']}")
        assert ga.json()["id"] == a.json()["id"]
        _same(ga, gb)
        for path in ("/v1/videos/video_absent", "/v1/videos/%20x"):
            _same(await hot.get(path), await full.get(path))  # 404 problem+json
        bad = {**JOB, "size": "7x7", "num_frames": 4}
        ea, eb = await hot.post("/v1/videos", json=bad), await full.post("/v1/videos", json=bad)
        assert ea.status_code == 400 and ea.json()["error"]["param"] in ("size", "num_frames")
        _same(ea, eb)
        for raw in (b"[1, 2]", b"{not json", b""):
            ra = await hot.post("/v1/videos", content=raw, headers={"content-type": "application/json"})
            rb = await full.post("/v1/videos", content=raw, headers={"content-type": "application/json"})
            _same(ra, rb)
        rid = {"X-Request-ID": "trace-7"}
        assert (await hot.post("/v1/videos", json=JOB, headers=rid)).headers["x-request-id"] == "trace-7"
        # a replayed Idempotency-Key answers the same job with the replay header, both ways
        key = {"Idempotency-Key": "hot-1"}
        first = await hot.post("/v1/videos", json=JOB, headers=key)
        ra, rb = (
            await hot.post("/v1/videos", json=JOB, headers=key),
            await full.post("/v1/videos", json=JOB, headers=key),
        )
        assert ra.headers["idempotent-replayed"] == "true" and ra.json()["id"] == first.json()["id"]
        _same(ra, rb)
    assert seen == []  # none of these reached the framework's stack


async def test_auth_limits_and_body_cap_answer_as_the_full_stack_does(secured: Service) -> None:
    hot, full, seen = _clients(secured)
    auth = await secured.key("hot")
    async with hot, full:
        for headers in ({}, {"Authorization": "Bearer wsk_wrong"}):
            a, b = (
                await hot.post("/v1/videos", json=JOB, headers=headers),
                await full.post("/v1/videos", json=JOB, headers=headers),
            )
            assert a.status_code == 401 and a.headers["www-authenticate"]
            _same(a, b)
            _same(
                await hot.get("/v1/videos/video_x", headers=headers),
                await full.get("/v1/videos/video_x", headers=headers),
            )
        a = await hot.post("/v1/videos", json=JOB, headers=auth)
        assert a.status_code == 202 and a.headers["x-ratelimit-limit"]
        _same(a, await full.post("/v1/videos", json=JOB, headers=auth))
        other = await secured.key("other")
        _same(  # another tenant's job is absent
            await hot.get(f"/v1/videos/{a.json()['id']}", headers=other),
            await full.get(f"/v1/videos/{a.json()['id']}", headers=other),
        )
        big = json.dumps({**JOB, "prompt": "x" * (secured.state.settings.max_body_bytes + 1)})
        ta = await hot.post("/v1/videos", content=big, headers={**auth, "content-type": "application/json"})
        tb = await full.post("/v1/videos", content=big, headers={**auth, "content-type": "application/json"})
        assert ta.status_code == 413 and ta.headers["x-request-id"]
        assert ta.json() == tb.json()

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap applies while reading
            for _ in range(3):
                yield b" " * (secured.state.settings.max_body_bytes // 2)

        ca = await hot.post(
            "/v1/videos", content=chunks(), headers={**auth, "content-type": "application/json"}
        )
        assert ca.status_code == 413 and ca.json()["error"]["type"] == "request_too_large"
    assert seen == []


async def test_everything_else_goes_through_the_full_stack(service: Service) -> None:
    hot, full, seen = _clients(service)
    async with hot, full:
        form = await hot.post(
            "/v1/videos", data={"prompt": "a blue square", "size": "32x32", "num_frames": "5"}
        )
        assert form.status_code == 202
        cors = await hot.post("/v1/videos", json=JOB, headers={"Origin": "http://example.org"})
        assert cors.status_code == 202
        vid = form.json()["id"]
        await hot.get(f"/v1/videos/{vid}/logs")
        await hot.get("/v1/videos")
        await hot.head(f"/v1/videos/{vid}")
        await hot.options("/v1/videos")
        await hot.post(f"/v1/videos/{vid}/cancel")
    assert seen == [
        "POST /v1/videos",
        "POST /v1/videos",
        f"GET /v1/videos/{vid}/logs",
        "GET /v1/videos",
        f"HEAD /v1/videos/{vid}",
        "OPTIONS /v1/videos",
        f"POST /v1/videos/{vid}/cancel",
    ]


def test_route_matching() -> None:
    def scope(method: str, path: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
        return {"method": method, "path": path, "headers": list(headers)}

    assert _route(scope("POST", "/v1/videos", (b"content-type", b"application/json"))) == "create"
    assert _route(scope("POST", "/v1/videos")) == "create"  # read as JSON, as the route does
    assert _route(scope("POST", "/v1/videos", (b"content-type", b"Multipart/Form-Data; boundary=x"))) is None
    assert _route(scope("POST", "/v1/videos/")) is None
    assert _route(scope("GET", "/v1/videos/video_1")) == "get"
    for path in ("/v1/videos/", "/v1/videos", "/v1/videos/video_1/content", "/v1/videos/a/"):
        assert _route(scope("GET", path)) is None


def test_encode_record_gives_the_texts_encode_values_gives() -> None:
    rec = record("video_enc", "m").model_copy(
        update={
            "metadata": {"k": "é ✓ \u2028", "n": [1, 2.5, None, True], "deep": {"x": {"y": 1e-7}}},
            "webhook_events": ["video.completed"],
            "timings": {"denoise_s": 0.1 + 0.2},
            "assets": {"video": "videos/x.mp4"},
            "error": JobErrorInfo(code="oom", message="out of memory"),
            "style": {"lighting": ["golden hour"]},
            "cancel_after": 12.5,
            "deadline_at": 1.7e9 + 0.123456789,
        }
    )
    assert encode_record(rec) == encode_values(rec.model_dump())
