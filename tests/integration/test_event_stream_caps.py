"""Open event streams are capped per key (429 + Retry-After), free their slot when they end, and a
flood of streams from one key (well above the Redis pool's 100 connections) leaves every other
key's requests, /readyz and /v1/models answering 2xx."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.core.apikeys import ApiKeyStore
from tests.service_support import RedisServer, start_gateway, start_worker

pytestmark = pytest.mark.integration

FLOOD = 160  # above redis-py's default pool of 100 connections


def _tokens(url: str, *names: str) -> list[str]:
    async def run() -> list[str]:
        r = Redis.from_url(url, decode_responses=True)
        try:
            return [(await ApiKeyStore(r).create(n))[1] for n in names]
        finally:
            await r.aclose()

    return asyncio.run(run())


async def _open(c: httpx.AsyncClient, vid: str) -> httpx.Response:
    return await c.send(c.build_request("GET", f"/v1/videos/{vid}/events"), stream=True)


async def _flood(base: str, flooder: str, other: str) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=FLOOD + 50, max_keepalive_connections=0)
    hdr = {"Authorization": f"Bearer {flooder}"}
    out: dict[str, Any] = {}
    async with (
        httpx.AsyncClient(base_url=base, headers=hdr, timeout=60, limits=limits) as fc,
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {other}"}, timeout=30) as oc,
    ):
        r = await fc.post("/v1/videos", json={"prompt": "flood", "num_inference_steps": 50})
        assert r.status_code == 202, r.text
        vid = r.json()["id"]
        streams = await asyncio.gather(*(_open(fc, vid) for _ in range(FLOOD)))
        out["flood_status"] = sorted(s.status_code for s in streams)
        # one more than the key's cap: refused before any stream starts
        extra = await _open(fc, vid)
        out["extra"] = (extra.status_code, extra.headers.get("retry-after"), (await extra.aread()).decode())
        await extra.aclose()
        # every stream really is open and reading (each got at least the first SSE line)
        firsts = await asyncio.gather(*(anext(s.aiter_lines()) for s in streams if s.status_code == 200))
        out["firsts"] = set(firsts)
        # another key, while all of them are open
        codes: list[int] = []
        for i in range(3):
            created = await oc.post("/v1/videos", json={"prompt": f"other {i}", "num_inference_steps": 1})
            codes.append(created.status_code)
            codes.append((await oc.get(f"/v1/videos/{created.json().get('id', 'x')}")).status_code)
            codes.append((await oc.get("/v1/videos")).status_code)
            codes.append((await oc.get("/v1/models")).status_code)
            codes.append((await oc.get("/readyz")).status_code)
        out["other"] = codes
        # a stream that ends frees its slot: close one, then a new one is admitted
        await streams[0].aclose()
        for _ in range(50):
            again = await _open(fc, vid)
            if again.status_code == 200:
                break
            await again.aclose()
            await asyncio.sleep(0.1)
        out["again"] = again.status_code
        await again.aclose()
        for s in streams[1:]:
            await s.aclose()
        # a stream that ends on its terminal event frees its slot too (the job waits behind the
        # flooded one, so the cancel is immediate)
        queued = (await oc.post("/v1/videos", json={"prompt": "to cancel", "num_inference_steps": 1})).json()
        await oc.post(f"/v1/videos/{queued['id']}/cancel")
        async with oc.stream("GET", f"/v1/videos/{queued['id']}/events") as s:
            out["cancel_events"] = [line async for line in s.aiter_lines() if line.startswith("event:")]
    return out


def test_stream_caps_and_flood(tmp_path) -> None:
    server = RedisServer().start()
    gw = start_gateway(
        server.url,
        tmp_path,
        auth=True,
        rate_limit_requests=0,
        max_streams_per_key=FLOOD,
        max_streams_total=FLOOD + 40,
    )
    worker = start_worker(server.url, tmp_path, debug_step_delay_s=0.5)
    try:
        flooder, other = _tokens(server.url, "flooder", "other")
        out = asyncio.run(_flood(gw.url or "", flooder, other))
        # the other key first: on the old gateway this is what broke (503s everywhere)
        assert all(200 <= c < 300 for c in out["other"]), (Counter(out["other"]), gw.log())
        assert out["flood_status"] == [200] * FLOOD, Counter(out["flood_status"])
        assert out["firsts"] == {"retry: 1000"}
        status, retry_after, body = out["extra"]
        assert status == 429, body
        assert retry_after is not None and int(retry_after) >= 1
        assert "stream" in body
        assert out["again"] == 200
        assert out["cancel_events"][-1] == "event: video.cancelled"
        # every slot is given back: by the client leaving, and by the terminal event
        slots = server.client()
        deadline = time.monotonic() + 10
        while list(slots.scan_iter("wanserve:streams:*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not list(slots.scan_iter("wanserve:streams:*"))
    finally:
        worker.kill()
        gw.stop()
        server.close()
