"""Gateway-only load (``bench/load.py --paused-worker``): wanserve vs the bare baseline app, with
the one worker registered but SIGSTOPped so that only the gateway and Redis are measured.

A round = N ``POST /v1/videos`` at C concurrent, then one ``GET /v1/videos/{id}`` per created job
at C concurrent, against one app. Rounds alternate between wanserve and the baseline (and which
goes first), so drift in the shared machine's load hits both alike; each app's p50 and p99 are
the median over its rounds, and the ratios are wanserve / baseline of those medians.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.service_support import (  # noqa: E402
    RedisServer,
    ServiceProcess,
    start_gateway,
    start_worker,
)

JOB = {"prompt": "load test", "num_inference_steps": 1, "num_frames": 1, "size": "32x32"}
# a paused worker sends no heartbeats: its registration must outlive the whole run
LONG_TTL_S = 3600


@dataclass
class Round:
    create_ms: list[float]
    get_ms: list[float]
    codes: dict[int, int]
    create_cpu_ms: float = 0.0  # the server process's CPU time over the creates (user + system)
    get_cpu_ms: float = 0.0


def cpu_ms(pid: int) -> float:
    """CPU time of a process so far: steadier than latency on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def one_round(base: str, jobs: int, clients: int, pid: int) -> Round:
    rnd = Round([], [], {})
    ids: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as c:
        # one warm request so connection set-up is not in the first sample of the round
        await c.get("/v1/videos/video_0")
        per = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]

        async def creator(n: int) -> None:
            for _ in range(n):
                t0 = time.perf_counter()
                try:
                    r = await c.post("/v1/videos", json=JOB)
                except httpx.TransportError:  # counted as status 0, never silently dropped
                    rnd.codes[0] = rnd.codes.get(0, 0) + 1
                    continue
                rnd.create_ms.append((time.perf_counter() - t0) * 1000)
                rnd.codes[r.status_code] = rnd.codes.get(r.status_code, 0) + 1
                if r.status_code in (200, 202):
                    ids.append(r.json()["id"])

        cpu0 = cpu_ms(pid)
        await asyncio.gather(*(creator(n) for n in per))
        cpu1 = cpu_ms(pid)

        async def getter(mine: list[str]) -> None:
            for vid in mine:
                t0 = time.perf_counter()
                try:
                    r = await c.get(f"/v1/videos/{vid}")
                except httpx.TransportError:
                    rnd.codes[0] = rnd.codes.get(0, 0) + 1
                    continue
                rnd.get_ms.append((time.perf_counter() - t0) * 1000)
                rnd.codes[r.status_code] = rnd.codes.get(r.status_code, 0) + 1

        await asyncio.gather(*(getter(ids[i::clients]) for i in range(clients)))
        rnd.create_cpu_ms, rnd.get_cpu_ms = cpu1 - cpu0, cpu_ms(pid) - cpu1
    return rnd


def _summary(rounds: list[Round]) -> dict[str, float]:
    return {
        "create_p50": statistics.median(statistics.median(r.create_ms) for r in rounds),
        "create_p99": statistics.median(pct(r.create_ms, 99) for r in rounds),
        "get_p50": statistics.median(statistics.median(r.get_ms) for r in rounds),
        "get_p99": statistics.median(pct(r.get_ms, 99) for r in rounds),
    }


def report(jobs: int, clients: int, ours: list[Round], base: list[Round], label: str) -> str:
    o, b = _summary(ours), _summary(base)
    cmd = (
        f".venv/bin/python bench/load.py --paused-worker --jobs {jobs} --clients {clients} "
        f"--rounds {len(ours)}"
    )
    lines = [
        "",
        f"### Gateway-only load{' — ' + label if label else ''} — "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Command: `{cmd}` (load average at the start: {os.getloadavg()[0]:.1f})",
        "",
        "| round | wanserve create p50 / p99 | baseline create p50 / p99 | wanserve get p50 / p99 | "
        "baseline get p50 / p99 |",
        "|---|---|---|---|---|",
    ]
    for i, (w, z) in enumerate(zip(ours, base, strict=True), 1):
        lines.append(
            f"| {i} | {statistics.median(w.create_ms):.1f} / {pct(w.create_ms, 99):.1f} | "
            f"{statistics.median(z.create_ms):.1f} / {pct(z.create_ms, 99):.1f} | "
            f"{statistics.median(w.get_ms):.1f} / {pct(w.get_ms, 99):.1f} | "
            f"{statistics.median(z.get_ms):.1f} / {pct(z.get_ms, 99):.1f} |"
        )
    lines += [
        f"| median | {o['create_p50']:.1f} / {o['create_p99']:.1f} | {b['create_p50']:.1f} / "
        f"{b['create_p99']:.1f} | {o['get_p50']:.1f} / {o['get_p99']:.1f} | {b['get_p50']:.1f} / "
        f"{b['get_p99']:.1f} |",
        "",
        f"Ratio wanserve / baseline (ms, medians of the rounds): **create p50 "
        f"{o['create_p50'] / b['create_p50']:.2f}x, p99 {o['create_p99'] / b['create_p99']:.2f}x; "
        f"get p50 {o['get_p50'] / b['get_p50']:.2f}x, p99 {o['get_p99'] / b['get_p99']:.2f}x**. "
        f"Server CPU per request (median of the rounds): create wanserve {_cpu(ours, jobs, 'create'):.2f} "
        f"ms, baseline {_cpu(base, jobs, 'create'):.2f} ms; get wanserve {_cpu(ours, jobs, 'get'):.2f} ms, "
        f"baseline {_cpu(base, jobs, 'get'):.2f} ms. "
        f"Status codes: wanserve {_codes(ours)}, baseline {_codes(base)}.",
        "",
    ]
    return "\n".join(lines)


def _cpu(rounds: list[Round], jobs: int, phase: str) -> float:
    return statistics.median(r.create_cpu_ms if phase == "create" else r.get_cpu_ms for r in rounds) / jobs


def _codes(rounds: list[Round]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in rounds:
        for c, n in r.codes.items():
            out[c] = out.get(c, 0) + n
    return dict(sorted(out.items()))


def run_paused(jobs: int, clients: int, rounds: int, *, write: bool, label: str = "") -> int:
    from bench.load import start_baseline

    data = Path(tempfile.mkdtemp(prefix="wanserve-paused-"))
    redis = RedisServer().start()
    procs: list[ServiceProcess] = []
    baseline_proc = None
    worker = None
    try:
        quiet = {"log_level": "WARNING", "worker_ttl_s": LONG_TTL_S}
        worker = start_worker(redis.url, data, model="tiny-ti2v", timeout=300, **quiet)
        procs.append(worker)
        os.killpg(worker.pid, signal.SIGSTOP)  # registered and served, consuming nothing
        gw = start_gateway(redis.url, data, max_queued_jobs=jobs * rounds * 4, **quiet)
        procs.append(gw)
        assert gw.url is not None
        baseline_proc, base_url = start_baseline(redis.url)
        ours: list[Round] = []
        base: list[Round] = []
        for i in range(rounds):
            order = [("wanserve", gw.url, gw.pid), ("baseline", base_url, baseline_proc.pid)]
            for name, url, pid in order if i % 2 == 0 else order[::-1]:
                rnd = asyncio.run(one_round(url, jobs, clients, pid))
                (ours if name == "wanserve" else base).append(rnd)
                print(
                    f"round {i + 1} {name}: create p50 {statistics.median(rnd.create_ms):.1f} "
                    f"p99 {pct(rnd.create_ms, 99):.1f}; get p50 {statistics.median(rnd.get_ms):.1f} "
                    f"p99 {pct(rnd.get_ms, 99):.1f} ms; "
                    f"server CPU per create {rnd.create_cpu_ms / jobs:.2f} ms, "
                    f"per get {rnd.get_cpu_ms / jobs:.2f} ms; "
                    f"codes {rnd.codes}",
                    flush=True,
                )
        text = report(jobs, clients, ours, base, label)
        print(text)
        if write:
            with open(REPO / "bench" / "RESULTS.md", "a") as f:
                f.write(text)
        bad = sum(n for r in ours + base for c, n in r.codes.items() if c not in (200, 202))
        return 0 if bad == 0 else 1
    finally:
        if worker is not None and worker.alive():
            os.killpg(worker.pid, signal.SIGCONT)
        if baseline_proc is not None:
            baseline_proc.terminate()
            baseline_proc.wait(timeout=10)
        for p in procs:
            p.stop()
        redis.close()
