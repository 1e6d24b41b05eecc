"""Load test: N submissions from C concurrent clients against a real gateway + Redis with
tiny-model workers; every job must reach ``completed`` with zero 5xx. Measures p50/p99 latency of
``POST /v1/videos`` and of status polls (``GET /v1/videos/{id}``), next to a bare FastAPI + Redis
baseline (bench/baseline_app.py) driven with the same request mix in the same run.

    .venv/bin/python bench/load.py --jobs 1000 --clients 50 --workers 2 [--write]
    .venv/bin/python bench/load.py --paused-worker --jobs 300 --clients 30 [--rounds 3] [--write]

Each client submits its share of jobs back to back (phase 1), then all clients poll every job
until it is terminal (phase 2, each poll honours a 1 s pause per client round). The
workers run ``tiny-ti2v`` with the smallest job there is (32x32, 1 frame, 1 step) so that 2 CPU
cores can drain 1,000 jobs; the gateway's global queue cap is raised above the job count.

``--paused-worker`` measures only the gateway and Redis: one real ``tiny-ti2v`` worker starts and
registers (so the model is served and requests validate against its published preset), then its
process group is SIGSTOPped, so jobs stay queued and no CPU goes to generation. Each round sends
N creates, then one get per created job, at C concurrent, to the gateway and to the baseline;
the order alternates per round. Reported: per round p50/p99 of each, the median of the rounds, and
the gateway / baseline ratios of those medians (`bench/paused.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.service_support import (  # noqa: E402
    RedisServer,
    ServiceProcess,
    free_port,
    start_gateway,
    start_worker,
    wait_for,
)

JOB = {"prompt": "load test", "num_inference_steps": 1, "num_frames": 1, "size": "32x32"}
TERMINAL = {"completed", "failed", "cancelled"}
POLL_PAUSE_S = 1.0  # per client, between rounds over its jobs (= the gateway's openai-poll-after-ms)


@dataclass
class Stats:
    submit_ms: list[float] = field(default_factory=list)
    poll_ms: list[float] = field(default_factory=list)
    codes: dict[int, int] = field(default_factory=dict)
    final: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

    def code(self, c: int) -> None:
        self.codes[c] = self.codes.get(c, 0) + 1

    @property
    def n5xx(self) -> int:
        return sum(n for c, n in self.codes.items() if c >= 500)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def drive(base: str, jobs: int, clients: int, *, baseline: bool, max_polls: int | None = None) -> Stats:
    st = Stats()
    ids: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as c:
        per = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]

        async def submitter(n: int) -> None:
            for _ in range(n):
                t0 = time.perf_counter()
                r = await c.post("/v1/videos", json=JOB)
                st.submit_ms.append((time.perf_counter() - t0) * 1000)
                st.code(r.status_code)
                if r.status_code in (200, 202):
                    ids.append(r.json()["id"])

        t_start = time.perf_counter()
        await asyncio.gather(*(submitter(n) for n in per))
        pending = list(ids)
        polls = 0

        async def poller(mine: list[str]) -> None:
            nonlocal polls
            todo = list(mine)
            while todo:
                nxt = []
                for vid in todo:
                    if max_polls is not None and polls >= max_polls:
                        return
                    t0 = time.perf_counter()
                    r = await c.get(f"/v1/videos/{vid}")
                    st.poll_ms.append((time.perf_counter() - t0) * 1000)
                    polls += 1
                    st.code(r.status_code)
                    status = r.json().get("status") if r.status_code == 200 else None
                    if baseline or status in TERMINAL:
                        st.final[str(status)] = st.final.get(str(status), 0) + 1
                        if baseline:
                            nxt.append(vid)  # the baseline never finishes: keep polling the same mix
                    else:
                        nxt.append(vid)
                todo = nxt if not baseline else todo
                await asyncio.sleep(POLL_PAUSE_S)

        shards = [pending[i::clients] for i in range(clients)]
        await asyncio.gather(*(poller(s) for s in shards))
        st.wall_s = time.perf_counter() - t_start
    return st


def start_baseline(redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "BASELINE_REDIS_URL": redis_url, "BASELINE_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "baseline_app.py")],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(url + "/v1/videos/x", timeout=1).status_code == 404, 30, "baseline up")
    return proc, url


def row(name: str, xs: list[float]) -> str:
    return (
        f"| {name} | {len(xs)} | {statistics.median(xs):.1f} | {pct(xs, 99):.1f} | {max(xs):.1f} |"
        if xs
        else f"| {name} | 0 | - | - | - |"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="append the results to bench/RESULTS.md")
    ap.add_argument("--paused-worker", action="store_true", help="gateway + Redis only (worker paused)")
    ap.add_argument("--rounds", type=int, default=3, help="--paused-worker: alternating rounds")
    ap.add_argument("--label", default="", help="--paused-worker: a title for the results section")
    args = ap.parse_args()
    if args.paused_worker:
        from bench.paused import run_paused

        return run_paused(args.jobs, args.clients, args.rounds, write=args.write, label=args.label)

    data = Path(tempfile.mkdtemp(prefix="wanserve-load-"))
    redis = RedisServer().start()
    procs: list[ServiceProcess] = []
    baseline_proc = None
    try:
        quiet = {"log_level": "WARNING", "heartbeat_interval_s": 2.0, "worker_ttl_s": 10}
        for _ in range(args.workers):
            procs.append(start_worker(redis.url, data, model="tiny-ti2v", timeout=300, **quiet))
        gw = start_gateway(
            redis.url,
            data,
            max_queued_jobs=args.jobs * 2,
            poll_after_ms=int(POLL_PAUSE_S * 1000),
            log_format="json",
            **quiet,
        )
        procs.append(gw)
        assert gw.url is not None

        baseline_proc, base_url = start_baseline(redis.url)
        print(f"load: {args.jobs} jobs, {args.clients} clients, {args.workers} tiny-ti2v workers", flush=True)
        ours = asyncio.run(drive(gw.url, args.jobs, args.clients, baseline=False))
        print(f"wanserve: {ours.wall_s:.1f}s codes={ours.codes} final={ours.final}", flush=True)
        base = asyncio.run(
            drive(base_url, args.jobs, args.clients, baseline=True, max_polls=len(ours.poll_ms))
        )
        print(f"baseline: {base.wall_s:.1f}s codes={base.codes}", flush=True)

        completed = ours.final.get("completed", 0)
        ok = completed == args.jobs and ours.n5xx == 0
        lines = [
            "",
            f"## Load test (reliability) — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            "",
            f"Command: `.venv/bin/python bench/load.py --jobs {args.jobs} --clients {args.clients} "
            f"--workers {args.workers}` — a private redis-server, {args.workers} real `tiny-ti2v` Celery "
            "workers (prefork, concurrency 1, 1 torch thread) and a uvicorn gateway, all on the 2-core "
            "development VM shared with other engineers' processes. Jobs are the smallest there is "
            "(32x32, 1 frame, 1 step) so 2 cores can drain them; the gateway's `max_queued_jobs` is raised "
            "above the job count (the default, 1000, would start answering 429 at the edge). Phase 1: "
            "every client submits its share back to back; phase 2: every job is polled until terminal "
            "(1 s pause per client round, as `openai-poll-after-ms` says). The baseline "
            "(`bench/baseline_app.py`: validate, HSET + LPUSH; "
            "HGETALL) gets the same submissions and the same number of polls in the same run.",
            "",
            f"Result: **{completed}/{args.jobs} completed**, "
            f"{ours.final.get('failed', 0)} failed, {ours.n5xx} responses 5xx "
            f"(status codes: {dict(sorted(ours.codes.items()))}); wall time {ours.wall_s:.0f} s "
            f"(submissions + draining the queue).",
            "",
            "| latency (ms) | requests | p50 | p99 | max |",
            "|---|---|---|---|---|",
            row("wanserve `POST /v1/videos`", ours.submit_ms),
            row("baseline `POST /v1/videos`", base.submit_ms),
            row("wanserve `GET /v1/videos/{id}`", ours.poll_ms),
            row("baseline `GET /v1/videos/{id}`", base.poll_ms),
            "",
            "Overhead ratio (wanserve / baseline): submit p50 "
            f"{statistics.median(ours.submit_ms) / statistics.median(base.submit_ms):.1f}x, p99 "
            f"{pct(ours.submit_ms, 99) / pct(base.submit_ms, 99):.1f}x; poll p50 "
            f"{statistics.median(ours.poll_ms) / statistics.median(base.poll_ms):.1f}x, p99 "
            f"{pct(ours.poll_ms, 99) / pct(base.poll_ms, 99):.1f}x. While wanserve is measured, the "
            "workers are generating and encoding on the same 2 cores; the baseline runs after them "
            "with the workers idle.",
            "",
        ]
        text = "\n".join(lines)
        print(text)
        if args.write:
            with open(REPO / "bench" / "RESULTS.md", "a") as f:
                f.write(text)
        return 0 if ok else 1
    finally:
        if baseline_proc is not None:
            baseline_proc.terminate()
            baseline_proc.wait(timeout=10)
        for p in procs:
            p.stop()
        redis.close()


if __name__ == "__main__":
    raise SystemExit(main())
