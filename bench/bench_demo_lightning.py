"""The demo's 4-step LoRA against the defaults: prompt following on the fixed sets and denoising cost.

    .venv/bin/python bench/bench_demo_lightning.py                # 2 threads, 5 timing rounds

Rates on the fixed sets of tests/model/test_demo_quality.py (24 text-mode, 8 image-mode clips) for
the preset defaults (the teacher: UniPC, 20 steps, guidance 6), `wanserve-demo-lightning` at its
sidecar defaults (distill, 4 steps, no guidance) and the same 4 distill steps without the LoRA.
Denoising cost: DiT forwards weighted by batch size, and the time from the first DiT forward to the
end of the last one (no text encoding, no VAE decode), default and LoRA runs interleaved; median
and minimum over the rounds. The load average is printed: other processes inflate the times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import load_pipeline  # noqa: E402
from model.lora import load_lora  # noqa: E402
from model.presets import DEMO_LORA_DIR  # noqa: E402
from training.demo import evaluate as E  # noqa: E402

NAME = "wanserve-demo-lightning"


def rates(pipe: object, **gen: object) -> str:
    text = E.evaluate_text_mode(pipe, E.text_cases(24), **gen)
    image = E.evaluate_image_mode(pipe, E.image_cases(8), **gen)
    colour = sum(s.color_ok for s in text)
    direction = sum(s.direction_ok for s in text)
    return (
        f"text {sum(s.ok for s in text)}/24 (colour {colour}, direction {direction}), "
        f"image {sum(r.clip.ok for r in image)}/8, min psnr {min(r.psnr for r in image):.1f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline("wanserve-demo")
    side = json.loads((DEMO_LORA_DIR / f"{NAME}.json").read_text())["defaults"]
    plain = {
        "sampler": side["sampler"],
        "num_steps": side["num_inference_steps"],
        "guidance_scale": side["guidance_scale"],
        "shift": side["shift"],
    }
    lora = {**plain, "loras": [(load_lora(DEMO_LORA_DIR / f"{NAME}.safetensors"), 1.0)]}
    print(f"load average {os.getloadavg()[0]:.2f}, {args.threads} threads")  # noqa: T201
    print(f"teacher (preset defaults): {rates(pipe)}")  # noqa: T201
    print(f"{NAME}, {plain}: {rates(pipe, **lora)}")  # noqa: T201
    print(f"no LoRA, {plain}: {rates(pipe, **plain)}")  # noqa: T201
    E.denoise_cost(pipe, **lora)
    base, fast = [], []
    for _ in range(args.rounds):
        base.append(E.denoise_cost(pipe))
        fast.append(E.denoise_cost(pipe, **lora))
    bt, ft = [t for _, t in base], [t for _, t in fast]
    print(  # noqa: T201
        f"DiT forwards x batch: default {base[0][0]}, LoRA {fast[0][0]} "
        f"(ratio {fast[0][0] / base[0][0]:.2f}); "
        f"denoising s: default median {statistics.median(bt):.3f} min {min(bt):.3f}, "
        f"LoRA median {statistics.median(ft):.3f} min {min(ft):.3f}; "
        f"ratio median {statistics.median(ft) / statistics.median(bt):.2f} min {min(ft) / min(bt):.2f}"
    )
    print(f"load average {os.getloadavg()[0]:.2f}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
