"""Stream flood: one key holds a few hundred open ``/events`` streams while another key submits and
polls; reports the other key's status codes and latencies (it must see no 5xx).

    .venv/bin/python bench/stream_flood.py --streams 300 --seconds 30 [--cap 300]

Starts a private redis-server, a uvicorn gateway (auth on, request rate limit off, the per-key
stream cap at ``--cap``, default = ``--streams``) and two slowed ``tiny-ti2v`` workers: the first
(2 s per step) runs the flooded 50-step job for the whole test, the second (0.5 s per step, started
once the first has taken that job) the other key's jobs. The flooding key opens ``--streams``
streams on its job, plus ten more that the cap should refuse. For ``--seconds`` the other key then
loops: create a 1-step job, poll it until terminal, list its jobs, ``GET /v1/models`` and
``GET /readyz``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from redis.asyncio import Redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.apikeys import ApiKeyStore  # noqa: E402
from tests.service_support import RedisServer, start_gateway, start_worker  # noqa: E402

SMALL = {"prompt": "other key", "num_inference_steps": 1, "num_frames": 1, "size": "32x32"}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


async def tokens(url: str) -> tuple[str, str]:
    r = Redis.from_url(url, decode_responses=True)
    try:
        store = ApiKeyStore(r)
        return (await store.create("flooder"))[1], (await store.create("other"))[1]
    finally:
        await r.aclose()


async def run(
    base: str, flooder: str, other: str, streams: int, seconds: float, second_worker: Callable[[], object]
) -> None:
    limits = httpx.Limits(max_connections=streams + 20, max_keepalive_connections=0)
    fhdr = {"Authorization": f"Bearer {flooder}"}
    ohdr = {"Authorization": f"Bearer {other}"}
    lat: dict[str, list[float]] = {}
    codes: dict[str, Counter[int]] = {}

    async def timed(c: httpx.AsyncClient, name: str, method: str, url: str, **kw: object) -> httpx.Response:
        t0 = time.perf_counter()
        resp = await c.request(method, url, **kw)  # type: ignore[arg-type]
        lat.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
        codes.setdefault(name, Counter())[resp.status_code] += 1
        return resp

    async with (
        httpx.AsyncClient(base_url=base, headers=fhdr, timeout=60, limits=limits) as fc,
        httpx.AsyncClient(base_url=base, headers=ohdr, timeout=60) as oc,
    ):
        job = await fc.post("/v1/videos", json={"prompt": "flood", "num_inference_steps": 50})
        assert job.status_code == 202, job.text
        vid = job.json()["id"]
        while (await fc.get(f"/v1/videos/{vid}")).json()["status"] != "in_progress":
            await asyncio.sleep(0.2)
        await asyncio.to_thread(second_worker)
        t0 = time.perf_counter()
        opened = await asyncio.gather(
            *(
                fc.send(fc.build_request("GET", f"/v1/videos/{vid}/events"), stream=True)
                for _ in range(streams)
            )
        )
        open_s = time.perf_counter() - t0
        over = [
            await fc.send(fc.build_request("GET", f"/v1/videos/{vid}/events"), stream=True) for _ in range(10)
        ]
        flood_codes = Counter(s.status_code for s in opened)
        over_codes = Counter(s.status_code for s in over)
        for s in over:
            await s.aclose()
        end = time.monotonic() + seconds
        finished = 0
        while time.monotonic() < end:
            created = await timed(oc, "POST /v1/videos", "POST", "/v1/videos", json=SMALL)
            if created.status_code == 202:
                jid = created.json()["id"]
                while time.monotonic() < end + 30:
                    got = await timed(oc, "GET /v1/videos/{id}", "GET", f"/v1/videos/{jid}")
                    if got.status_code != 200 or got.json()["status"] in ("completed", "failed", "cancelled"):
                        finished += got.status_code == 200 and got.json()["status"] == "completed"
                        break
                    await asyncio.sleep(0.25)
            await timed(oc, "GET /v1/videos", "GET", "/v1/videos")
            await timed(oc, "GET /v1/models", "GET", "/v1/models")
            await timed(oc, "GET /readyz", "GET", "/readyz")
        still_open = sum(not s.is_closed for s in opened)
        for s in opened:
            await s.aclose()
        await fc.delete(f"/v1/videos/{vid}")

    print(
        f"flooding key: {streams} streams opened in {open_s:.1f} s: {dict(flood_codes)}; "
        f"10 more: {dict(over_codes)}"
    )
    print(f"flood streams still open at the end: {still_open}; other key's jobs completed: {finished}")
    print("| other key's request | count | status codes | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for name, xs in lat.items():
        print(
            f"| `{name}` | {len(xs)} | {dict(codes[name])} | {pct(xs, 50):.1f} | {pct(xs, 99):.1f} "
            f"| {max(xs):.1f} |"
        )
    n5xx = sum(n for c in codes.values() for k, n in c.items() if k >= 500)
    print(f"other key 5xx: {n5xx}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--cap", type=int, default=None, help="per-key stream cap (default: --streams)")
    args = ap.parse_args()
    cap = args.cap if args.cap is not None else args.streams
    server = RedisServer().start()
    with tempfile.TemporaryDirectory() as tmp:
        gw = start_gateway(
            server.url,
            Path(tmp),
            auth=True,
            rate_limit_requests=0,
            max_streams_per_key=cap,
            max_streams_total=cap + 100,
        )
        workers = [start_worker(server.url, Path(tmp), debug_step_delay_s=2.0)]
        try:
            flooder, other = asyncio.run(tokens(server.url))

            def second() -> None:
                workers.append(start_worker(server.url, Path(tmp), debug_step_delay_s=0.5))

            asyncio.run(run(gw.url or "", flooder, other, args.streams, args.seconds, second))
        finally:
            for w in workers:
                w.kill()
            gw.stop()
            server.close()


if __name__ == "__main__":
    main()
