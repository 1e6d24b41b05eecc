"""Expert pipelining on a two-process CPU simulation: throughput of consecutive A14B jobs.

Two processes stand for two devices: each is pinned to one CPU core (one torch thread) and owns
one expert. The "high" process runs text encoding + the high-noise steps of each job and hands the
`DenoiseState` through a one-slot queue to the "low" process, which runs the low-noise steps and
the VAE decode. Compared:

* one process on one core, job after job (what one device does today);
* the two processes in lockstep (job k+1 starts only when job k is decoded: the hand-off cost);
* the two processes pipelined (job k's low-noise phase overlaps job k+1's high-noise phase).

The model is random and A14B-shaped (two experts, Wan2.1 VAE, boundary 0.875); every video is
checked against the single-process one. Needs 2 cores (`os.sched_setaffinity`, Linux).

    .venv/bin/python bench/bench_expert_pipeline.py [--jobs 6] [--steps 10] [--dim 128] [--layers 4] \\
        [--px 128] [--frames 17]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NAME = "bench-a14b"
SIZE = {"px": 128, "frames": 17}  # from the command line; handed to the spawned processes


def _build(dim: int, layers: int) -> Any:
    """Register and build the random A14B-shaped pipeline (same seed -> same weights everywhere)."""
    from model import PRESETS, load_pipeline, register_preset
    from model.presets import TINY_SPECS, _tiny_dit

    dit = dict(_tiny_dit("t2v", 16, 16, 4), dim=dim, ffn_dim=4 * dim, num_layers=layers)
    TINY_SPECS[NAME] = dataclasses.replace(TINY_SPECS["tiny-t2v-a14b"], transformer=dit, seed=5)
    register_preset(
        dataclasses.replace(
            PRESETS["tiny-t2v-a14b"],
            model_id=NAME,
            sizes=((SIZE["px"], SIZE["px"]),),
            max_num_frames=SIZE["frames"],
        )
    )
    return load_pipeline(NAME, device="cpu", dtype=torch.float32)


def _request(k: int, steps: int) -> dict[str, Any]:
    px, frames = SIZE["px"], SIZE["frames"]
    return dict(prompt=f"job {k}: a boat", seed=k, num_steps=steps, width=px, height=px, num_frames=frames)


def _stage(role: str, core: int, args: tuple[int, int], size: dict[str, int], inq: Any, outq: Any) -> None:
    """One expert's process: `high` reads requests, `low` reads states; None ends the stream."""
    SIZE.update(size)
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    pipe = _build(*args)
    outq.put(("ready", role))
    busy = 0.0  # process CPU seconds spent on timed jobs (k >= 0)
    while (item := inq.get()) is not None:
        k, payload = item
        c0 = time.process_time()
        out = pipe.generate_high(**payload) if role == "high" else pipe.generate_low(payload)
        busy += time.process_time() - c0 if k >= 0 else 0.0
        outq.put((k, out))
    outq.put(None if role == "high" else ("cpu", busy))


def _two_processes(
    requests: list[dict[str, Any]], args: tuple[int, int], lockstep: bool
) -> tuple[float, list[Any]]:
    ctx = mp.get_context("spawn")
    req_q, hand_q, out_q = ctx.Queue(), ctx.Queue(maxsize=1), ctx.Queue()
    high = ctx.Process(target=_stage, args=("high", 0, args, SIZE, req_q, hand_q))
    low = ctx.Process(target=_stage, args=("low", 1, args, SIZE, hand_q, out_q))
    high.start()
    low.start()
    assert hand_q.get() == ("ready", "high")  # the low process reads hand_q only after this
    assert out_q.get() == ("ready", "low")
    # warm-up job through both processes, untimed
    req_q.put((-1, _request(99, requests[0]["num_steps"])))
    out_q.get()
    videos: list[Any] = [None] * len(requests)
    t0 = time.perf_counter()
    if lockstep:
        for k, r in enumerate(requests):
            req_q.put((k, r))
            _, videos[k] = out_q.get()
    else:
        for k, r in enumerate(requests):
            req_q.put((k, r))
        for _ in requests:
            k, v = out_q.get()
            videos[k] = v
    elapsed = time.perf_counter() - t0
    req_q.put(None)
    _, low_cpu = out_q.get()
    high.join()
    low.join()
    print(f"  ({'lockstep' if lockstep else 'pipelined'}: low-noise process busy {low_cpu:.2f} CPU s)")
    return elapsed, videos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--px", type=int, default=128, help="square frame size")
    ap.add_argument("--frames", type=int, default=17)
    a = ap.parse_args()
    SIZE.update(px=a.px, frames=a.frames)
    args = (a.dim, a.layers)
    requests = [_request(k, a.steps) for k in range(a.jobs)]

    os.sched_setaffinity(0, {0})
    torch.set_num_threads(1)
    pipe = _build(*args)
    state = pipe.generate_high(**_request(99, a.steps))  # warm-up, and the phase split
    pipe.generate_low(state)
    t_high = t_low = 0.0
    ref = []
    t0 = time.perf_counter()
    for r in requests:  # the phase split in process CPU seconds (steadier on a shared machine)
        t1 = time.process_time()
        s = pipe.generate_high(**r)
        t2 = time.process_time()
        ref.append(pipe.generate_low(s))
        t_high += t2 - t1
        t_low += time.process_time() - t2
    t_one = time.perf_counter() - t0
    os.sched_setaffinity(0, {0, 1})

    t_lock, v_lock = _two_processes(requests, args, lockstep=True)
    t_pipe, v_pipe = _two_processes(requests, args, lockstep=False)
    diff = max((v - r).abs().max().item() for vs in (v_lock, v_pipe) for v, r in zip(vs, ref, strict=True))
    n = a.jobs
    print(
        f"torch {torch.__version__}; dim {a.dim} x {a.layers} layers per expert, {a.px}x{a.px}x{a.frames}, "
        f"{a.steps} steps "
        f"({state.n_high} high-noise), CFG, {n} jobs; phase split (CPU s per job) high {t_high / n:.2f} / "
        f"low+decode {t_low / n:.2f}: ideal pipelined gain {(t_high + t_low) / max(t_high, t_low):.2f}x"
    )
    print("| mode | wall s | s / job | jobs / min | vs one process |")
    print("|---|---|---|---|---|")
    for label, t in (
        ("one process, one core, sequential", t_one),
        ("two processes (one core each), lockstep", t_lock),
        ("two processes (one core each), pipelined", t_pipe),
    ):
        print(f"| {label} | {t:.2f} | {t / n:.2f} | {60 * n / t:.1f} | {t_one / t:.2f}x |")
    print(f"max |video - one-process video| over all jobs: {diff:.1e}")


if __name__ == "__main__":
    main()
