"""Frame-rate conversion cost: FFmpeg's minterpolate vs the learned RIFE v4.6 interpolator.

Input: a clip of the demo model (wanserve-demo, 32x32, 17 frames at 8 fps), Lanczos-upscaled for
the larger sizes, and a synthetic moving-shapes clip at a real model size. Both interpolators raise
8 fps to 24 fps (two new frames per pair) through the worker's own functions
(`worker.postprocess.interpolate` / `interpolate_learned`); the time is per synthesised frame
(whole source positions are copies). RIFE runs with random weights: its cost does not depend on
them. Best of ``--repeats``.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_interpolation.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from model import load_pipeline
from model.interpolator import IFNet, RifeInterpolator
from worker.postprocess import interpolate, interpolate_learned, interpolated_count, upscale


def demo_clip(frames: int, steps: int) -> np.ndarray:
    pipe = load_pipeline("wanserve-demo")
    out = pipe.generate("a red circle moves slowly to the left", num_frames=frames, num_steps=steps, seed=0)
    return ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def shapes_clip(frames: int, w: int, h: int) -> np.ndarray:
    x = np.full((frames, h, w, 3), 40, np.uint8)
    s = h // 4
    for i in range(frames):
        x[i, s : 2 * s, 8 * i : 8 * i + s] = (230, 60, 20)
        x[i, 2 * s : 3 * s, w - s - 6 * i : w - 6 * i] = (20, 120, 230)
    return x


def best(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rife = RifeInterpolator(IFNet(), a.device)
    demo = demo_clip(17, 8)
    clips = {
        "32x32 (demo)": demo,
        "64x64 (demo, 2x upscale)": upscale(demo, 64, 64),
        "832x480 (A14B 480p), 5 frames": shapes_clip(5, 832, 480),
    }
    fps, out_fps = 8, 24
    print(f"threads={a.threads} device={a.device} torch={torch.__version__}")
    print("| clip | new frames | minterpolate / frame | RIFE v4.6 / frame | RIFE / minterpolate |")
    print("|---|---|---|---|---|")
    for name, clip in clips.items():
        new = interpolated_count(len(clip), fps, out_fps) - len(clip)
        rife_ms = 1000 * best(lambda c=clip: interpolate_learned(c, fps, out_fps, rife), a.repeats) / new
        mi_ms = 1000 * best(lambda c=clip: interpolate(c, fps, out_fps), a.repeats) / new
        print(f"| {name} | {new} | {mi_ms:.1f} ms | {rife_ms:.1f} ms | {rife_ms / mi_ms:.1f}x |")


if __name__ == "__main__":
    main()
