"""Wall time of one default `wanserve-demo` clip on CPU (target: < 10 s on 2 cores).

    .venv/bin/python bench/bench_demo.py                 # 2 threads, text mode and image mode
    .venv/bin/python bench/bench_demo.py --threads 1 --repeats 5

Loads the built-in weights once, runs one warm-up generation, then times `--repeats` generations
with the preset defaults (size, frames, steps, guidance, shift, sampler) and prints the median and
the minimum. Note the load average: on a shared machine other processes inflate the numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import load_pipeline  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    pipe = load_pipeline("wanserve-demo")
    load_s = time.perf_counter() - t0
    p = pipe.preset
    print(
        f"wanserve-demo: {p.default_size[0]}x{p.default_size[1]}, {p.default_num_frames} frames, "
        f"{p.default_num_steps} steps, guidance {p.default_guidance_scale}, shift {p.default_shift}, "
        f"{args.threads} threads; load {load_s:.2f}s; loadavg {os.getloadavg()[0]:.2f}"
    )
    image = torch.zeros(3, p.default_size[1], p.default_size[0]) - 1.0
    image[:, 10:20, 10:20] = torch.tensor([0.84, -0.8, -0.8]).view(3, 1, 1)
    prompt = "a red circle moves to the left on a black background"
    for mode, kwargs in (("text", {}), ("image", {"image": image})):
        pipe.generate(prompt, seed=0, **kwargs)  # warm-up
        times = []
        for i in range(args.repeats):
            t = time.perf_counter()
            video = pipe.generate(prompt, seed=i + 1, **kwargs)
            times.append(time.perf_counter() - t)
        print(
            f"{mode:5s} mode: median {statistics.median(times):.3f}s  min {min(times):.3f}s  "
            f"(n={len(times)}, video {tuple(video.shape)}); loadavg {os.getloadavg()[0]:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
