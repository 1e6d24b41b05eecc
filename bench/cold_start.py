"""Cold start: denoising time of a fresh worker's first jobs against its steady state, warm-up on/off.

Each trial is a fresh Python process that does what a worker process does before its first job
(`worker.runtime`: torch threads, `load_pipeline`, `prepare_pipeline`, then `worker.warmup.warm_up`
unless ``--no-warmup``), then runs ``--jobs`` generations of the same request a user would send
(the model's default size and frames, ``--steps`` steps, text-to-video, new prompt and seed each
time). Denoising is timed like the worker's `StepClock` (first to last step callback plus one mean
step). Trials alternate warm-up on/off; medians per job index are printed, with the warm-up time.

    .venv/bin/python bench/cold_start.py [--model wanserve-demo] [--steps 50] [--jobs 5] [--trials 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def trial(model: str, steps: int, jobs: int, warmup: bool, threads: int | None) -> dict[str, object]:
    """One fresh worker process's numbers (runs in the child)."""
    import torch

    from app.core.config import Settings
    from model import load_pipeline
    from worker.runtime import prepare_pipeline
    from worker.warmup import warm_up

    settings = Settings(model=model, warmup=warmup, torch_threads=threads)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    t0 = time.perf_counter()
    pipe = load_pipeline(settings.model, device=settings.device)
    prepare_pipeline(pipe, settings)
    load_s = time.perf_counter() - t0
    warm_s = warm_up(pipe, settings) if warmup else 0.0
    p = pipe.preset
    w, h = p.default_size
    denoise: list[float] = []
    for i in range(jobs):
        stamps: list[float] = []
        pipe.generate(
            f"a red circle moves to the left on a black background {i}",
            height=h,
            width=w,
            num_frames=p.default_num_frames,
            num_steps=steps,
            seed=1000 + i,
            callback=lambda *_, into=stamps: into.append(time.perf_counter()),
        )
        step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        denoise.append(stamps[-1] - stamps[0] + step)
    return {"load_s": load_s, "warmup_s": warm_s, "denoise_s": denoise}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="wanserve-demo")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=5)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        out = trial(args.model, args.steps, args.jobs, args.child == "on", args.threads)
        print(json.dumps(out))  # noqa: T201
        return
    runs: dict[str, list[dict[str, object]]] = {"on": [], "off": []}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(args.trials):
        for mode in ("off", "on"):
            cmd = [sys.executable, __file__, "--child", mode, "--model", args.model]
            cmd += ["--steps", str(args.steps), "--jobs", str(args.jobs)]
            cmd += ["--threads", str(args.threads)] if args.threads else []
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            runs[mode].append(json.loads(res.stdout.strip().splitlines()[-1]))
    for mode in ("off", "on"):
        per_job = [statistics.median(float(r["denoise_s"][i]) for r in runs[mode]) for i in range(args.jobs)]  # type: ignore[index]
        warm = statistics.median(float(r["warmup_s"]) for r in runs[mode])  # type: ignore[arg-type]
        steady = statistics.median(per_job[2:]) if args.jobs > 2 else per_job[-1]
        jobs = " ".join(f"{t:.3f}" for t in per_job)
        print(  # noqa: T201
            f"warm-up {mode:3}: warm-up {warm:.2f} s; denoising per job (s): {jobs}; "
            f"first/steady {per_job[0] / steady:.2f}x, second/steady {per_job[1] / steady:.2f}x"
        )


if __name__ == "__main__":
    main()
