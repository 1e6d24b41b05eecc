"""The open event streams of a revoked key end within a few seconds (revoking must cut live access)."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from redis.asyncio import Redis

from app.core.apikeys import ApiKeyStore
from tests.service_support import RedisServer, start_gateway, start_worker

pytestmark = pytest.mark.integration


def _key(url: str, op: str, name: str) -> str:
    async def run() -> str:
        r = Redis.from_url(url, decode_responses=True)
        try:
            store = ApiKeyStore(r)
            return (await store.create(name))[1] if op == "create" else str(await store.revoke(name))
        finally:
            await r.aclose()

    return asyncio.run(run())


def test_revoked_key_stream_ends(tmp_path) -> None:
    server = RedisServer().start()
    gw = start_gateway(server.url, tmp_path, auth=True)
    worker = start_worker(server.url, tmp_path, debug_step_delay_s=0.3)
    try:
        token = _key(server.url, "create", "tenant")
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=gw.url or "", timeout=30, headers=auth) as c:
            r = c.post("/v1/videos", json={"prompt": "x", "num_inference_steps": 40})
            assert r.status_code == 202, r.text
            vid = r.json()["id"]
            lines: list[str] = []
            ended = threading.Event()

            def read() -> None:
                with c.stream("GET", f"/v1/videos/{vid}/events") as s:
                    for line in s.iter_lines():
                        lines.append(line)
                ended.set()

            threading.Thread(target=read, daemon=True).start()
            deadline = time.monotonic() + 60
            while not any("video.progress" in line for line in lines) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _key(server.url, "revoke", "tenant") == "True"
            revoked_at = time.monotonic()
            assert ended.wait(8), "stream still open after revocation"
            assert time.monotonic() - revoked_at < 6
            assert not any("video.completed" in line for line in lines)
    finally:
        worker.kill()
        gw.stop()
        server.close()
