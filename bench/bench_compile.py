"""DiT forward on CPU: eager vs regional `torch.compile` of the blocks (`WanPipeline.compile_blocks`).

One process, same weights and inputs; compiled and eager forwards alternate after a warm-up
(which pays the compile). Reports process-CPU and wall medians and the eager/compiled ratio,
plus the compile time and the max abs difference of the outputs.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_compile.py --threads 1
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.transformer import TransformerConfig, WanTransformer  # noqa: E402


def _time(fn: object, iters: int) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(iters):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()  # type: ignore[operator]
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--frames", type=int, default=5, help="latent frames")
    ap.add_argument("--latent", type=int, default=16, help="latent height = width")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = TransformerConfig(
        model_type="ti2v", in_dim=48, out_dim=48, dim=args.dim, ffn_dim=4 * args.dim, text_dim=64,
        num_heads=args.heads, num_layers=args.layers,
    )  # fmt: skip
    eager = WanTransformer(cfg).eval()
    comp = copy.deepcopy(eager)
    for block in comp.blocks:
        block.compile()
    x = torch.randn(args.batch, 48, args.frames, args.latent, args.latent)
    t = torch.full((args.batch,), 700.0)
    ctx = torch.randn(args.batch, 64, 64)
    with torch.inference_mode():
        ref = eager(x, t, ctx)
        c0 = time.perf_counter()
        out = comp(x, t, ctx)
        compile_s = time.perf_counter() - c0
        diff = float((out - ref).abs().max())
        e_cpu, e_wall = _time(lambda: eager(x, t, ctx), args.iters)
        c_cpu, c_wall = _time(lambda: comp(x, t, ctx), args.iters)
        e_cpu2, e_wall2 = _time(lambda: eager(x, t, ctx), args.iters)
    e_cpu, e_wall = min(e_cpu, e_cpu2), min(e_wall, e_wall2)
    tokens = args.frames * (args.latent // 2) ** 2
    print(f"config dim={args.dim} heads={args.heads} layers={args.layers} tokens={tokens} batch={args.batch}")
    print(f"compile (first forward) {compile_s:.1f} s, max |compiled - eager| = {diff:.2e}")
    print("| | eager | compiled | eager / compiled |")
    print("|---|---|---|---|")
    print(f"| CPU time / forward | {e_cpu * 1e3:.1f} ms | {c_cpu * 1e3:.1f} ms | **{e_cpu / c_cpu:.2f}x** |")
    print(f"| wall / forward | {e_wall * 1e3:.1f} ms | {c_wall * 1e3:.1f} ms | {e_wall / c_wall:.2f}x |")


if __name__ == "__main__":
    main()
