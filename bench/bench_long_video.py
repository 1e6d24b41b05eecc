"""Long-video overhead: chained segments (`model.long_video`) vs the same segments generated alone.

Reference in the same run: `pipe.generate` for each segment length of the plan, text-only, same
steps. The ratio is the cost of chaining (conditioning through the image mode, colour match,
cross-fade, uint8 finishing); the seam quality numbers are the frame-to-frame change across the
junctions over the median change inside the video.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_long_video.py --model wanserve-demo --frames 81 --steps 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from model import load_pipeline
from model.long_video import generate_long_video, plan_for


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="wanserve-demo")
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pipe = load_pipeline(a.model)
    plan = plan_for(pipe.preset, a.frames)
    pipe.generate("warm-up", num_frames=pipe.preset.min_num_frames, num_steps=1)
    ref, chained = [], []
    alone: list[np.ndarray] = []
    for r in range(a.repeats):
        t = time.perf_counter()
        alone = []
        for k, n in enumerate(plan.lengths):
            out = pipe.generate("a red ball rolls right", num_frames=n, num_steps=a.steps, seed=r * 100 + k)
            alone.append(((out.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 3, 0).numpy())
        ref.append(time.perf_counter() - t)
        t = time.perf_counter()
        v = generate_long_video(
            pipe, "a red ball rolls right", total_frames=a.frames, seed=r, num_steps=a.steps
        )
        chained.append(time.perf_counter() - t)
    d = np.abs(np.diff(v.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    starts = np.cumsum([plan.new_frames(k) for k in range(plan.count)])[:-1]
    seam = max(d[s - plan.overlaps[1] - 1 : s + 1].max() for s in starts) / np.median(d)
    print(f"model {a.model}, {a.frames} frames = {plan.count} segments {plan.lengths}, {a.steps} steps")
    print(f"segments alone (median of {a.repeats}): {np.median(ref):.3f} s")
    print(f"chained long video:                {np.median(chained):.3f} s")
    print(f"ratio chained / alone: {np.median(chained) / np.median(ref):.3f}")
    print(f"largest junction change / median change: {seam:.2f} (chained)")
    # the naive alternative: independent clips cut together (no conditioning, no blend)
    cut = np.concatenate([alone[0], *[c[plan.overlaps[k] :] for k, c in enumerate(alone[1:], 1)]])[: a.frames]
    dc = np.abs(np.diff(cut.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    print(
        f"largest junction change / median change: {max(dc[s - 1] for s in starts) / np.median(dc):.2f} (cut)"
    )


if __name__ == "__main__":
    main()
