"""Pickup latency: time from `POST /v1/videos` returning to the worker starting the job.

Starts a private redis-server, one idle tiny-ti2v worker and a gateway (real processes), then
submits jobs one at a time, each ``--gap`` seconds after the previous one finished (so the worker
is idle: it has acknowledged the message, released its lease and collected garbage), and
compares the client's clock when the POST returned with the job's ``started_at`` (written by the
worker as the task body starts; same machine, same clock).

    .venv/bin/python bench/bench_pickup.py [--jobs 40] [--gap 1.0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core import keys  # noqa: E402
from tests.service_support import RedisServer, start_gateway, start_worker, wait_for  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--gap", type=float, default=1.0, help="idle seconds after each job finished")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-pickup-"))
    rs = RedisServer().start()
    worker = start_worker(rs.url, data, model="tiny-ti2v")
    gw = start_gateway(rs.url, data)
    r = redis.Redis.from_url(rs.url, decode_responses=True)
    lat: list[float] = []
    from_send: list[float] = []
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            for i in range(args.warmup + args.jobs):
                sent = time.time()
                resp = c.post(
                    "/v1/videos", json={"prompt": "bench", "num_inference_steps": 1, "num_frames": 1}
                )
                returned = time.time()
                resp.raise_for_status()
                vid = resp.json()["id"]
                wait_for(
                    lambda vid=vid: r.hget(keys.job(vid), "status") == "completed", 30, vid, 0.01
                )
                started = float(r.hget(keys.job(vid), "started_at") or "nan")
                if i >= args.warmup:
                    lat.append((started - returned) * 1000)
                    from_send.append((started - sent) * 1000)
                time.sleep(args.gap)  # the worker finishes its bookkeeping and is idle again
    finally:
        gw.stop()
        worker.stop()
        rs.close()
    for name, xs in (("POST returned -> job started", lat), ("POST sent -> job started", from_send)):
        xs.sort()
        print(
            f"{name}: jobs={len(xs)} median={statistics.median(xs):.2f} ms  "
            f"p90={xs[int(0.9 * len(xs)) - 1]:.2f} ms  min={xs[0]:.2f} ms  max={xs[-1]:.2f} ms"
        )
    print("(negative: the worker had started the job before the POST response reached the client)")


if __name__ == "__main__":
    main()
