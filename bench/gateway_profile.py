"""In-process profile of the gateway's ``POST /v1/videos`` and ``GET /v1/videos/{id}``.

The real app (real job store, real broker messages, real Redis at ``--redis``) is called through
ASGI directly, with no HTTP server or client, so the profile holds only the gateway's own work.
A fake heartbeat makes ``tiny-ti2v`` served (worker TTL 1 h, as in `bench/paused.py`). Prints the
top functions by cumulative time and the mean wall and CPU time per request; ``--no-profile`` times
without cProfile's overhead, ``--baseline`` times bench/baseline_app.py on the same Redis instead.

    PYTHONPATH=$PWD .venv/bin/python bench/gateway_profile.py --redis redis://127.0.0.1:6491/0
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.api.main import create_app  # noqa: E402
from app.api.queue import JobQueue  # noqa: E402
from app.api.state import AppState  # noqa: E402
from app.api.streams import EventStreams  # noqa: E402
from app.core import registry  # noqa: E402
from app.core.config import Settings  # noqa: E402
from app.core.effects import build_async_job_store  # noqa: E402
from app.core.redis_mux import RedisMux  # noqa: E402
from app.core.redisconn import async_client  # noqa: E402
from app.core.storage import make_storage  # noqa: E402
from model.presets import PRESETS  # noqa: E402

SORT = __import__("os").environ.get("PROFILE_SORT", "cumulative")
JOB = json.dumps({"prompt": "load test", "num_inference_steps": 1, "num_frames": 1, "size": "32x32"}).encode()


async def call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    headers = [(b"host", b"gw"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("gw", 80),
    }  # fmt: skip
    sent = False
    out: dict[str, Any] = {"status": 0, "body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            out["status"] = msg["status"]
        elif msg["type"] == "http.response.body":
            out["body"] += msg.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["body"]


async def main(url: str, n: int, profile: bool, top: int, baseline: bool) -> None:
    settings = Settings(
        _env_file=None, redis_url=url, data_dir=Path(tempfile.mkdtemp()), model="tiny-ti2v",
        log_level="WARNING", max_queued_jobs=10**6, max_active_jobs=10**6, worker_ttl_s=3600,
    )  # fmt: skip
    sync = redis.Redis.from_url(url, decode_responses=True)
    sync.flushdb()
    preset = PRESETS["tiny-ti2v"]
    registry.publish_heartbeat(
        sync, worker_id="profile", preset_json=json.dumps(preset.to_dict()), model_id=preset.model_id,
        state="ready", device="cpu", current_job=None, ttl_s=3600,
    )  # fmt: skip
    r = async_client(settings)
    queue = JobQueue(settings)
    storage = make_storage(settings)
    store = build_async_job_store(settings, r, storage=storage, send_task=queue.celery.send_task)
    mux = RedisMux.from_url(url, timeout_s=settings.redis_timeout_s)  # as the gateway's lifespan does
    assert mux is not None
    state = AppState(
        settings=settings, redis=r, store=store, queue=queue, storage=storage,
        streams=EventStreams.open(r, settings), mux=mux,
    )  # fmt: skip
    app: Any = create_app(settings, state=state)
    if baseline:  # the bare app of bench/baseline_app.py, on the same Redis
        from bench.baseline_app import create_app as create_baseline

        app = create_baseline(url)
    for _ in range(20):  # warm: scripts loaded, pools filled
        code, body = await call(app, "POST", "/v1/videos", JOB)
        assert code == 202, body
        await call(app, "GET", f"/v1/videos/{json.loads(body)['id']}")
    prof = cProfile.Profile(time.process_time) if profile else None
    ids: list[str] = []
    for phase in ("create", "get"):
        t0, c0 = time.perf_counter(), time.process_time()
        if prof:
            prof.enable()
        for i in range(n):
            if phase == "create":
                code, body = await call(app, "POST", "/v1/videos", JOB)
                ids.append(json.loads(body)["id"])
            else:
                code, body = await call(app, "GET", f"/v1/videos/{ids[i]}")
            assert code in (200, 202), body
        if prof:
            prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"{phase}: {wall / n * 1000:.3f} ms wall, {cpu / n * 1000:.3f} ms CPU per request")
        if prof:
            pstats.Stats(prof).sort_stats(SORT).print_stats(top)
            prof = cProfile.Profile(time.process_time)
    await state.streams.close()
    queue.close()
    await mux.close()
    await r.aclose()
    sync.flushdb()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", required=True)
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--top", type=int, default=60)
    ap.add_argument("--baseline", action="store_true", help="time bench/baseline_app.py instead")
    a = ap.parse_args()
    asyncio.run(main(a.redis, a.n, not a.no_profile, a.top, a.baseline))
