"""DiT forward: our WanTransformer vs diffusers' WanTransformer3DModel, same config, same weights, same run.

Time: both models live in this process; forwards alternate (ours, theirs, ours, ...) after a warm-up and
the median of ``--iters`` is reported, in fp32 and bf16 (``.to(dtype)`` on both).

Peak memory: one fresh subprocess per (implementation, dtype) loads the shared weights, runs a warm-up
forward, then resets the kernel's RSS high-water mark (``/proc/self/clear_refs``) and reports
``VmHWM - VmRSS`` across one more forward: the extra resident memory the forward needs (activations,
temporaries, output). glibc is told to serve every allocation over 64 KiB with mmap
(``MALLOC_MMAP_THRESHOLD_``) so freed memory leaves RSS and the number tracks live allocations.

    .venv/bin/python bench/bench_dit.py            # ~1-2 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.transformer import (  # noqa: E402
    TransformerConfig,
    WanTransformer,
    count_parameters,
    official_to_diffusers_transformer_keys,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def make_config(args: argparse.Namespace) -> TransformerConfig:
    return TransformerConfig(
        in_dim=args.channels,
        out_dim=args.channels,
        dim=args.dim,
        ffn_dim=args.ffn_dim,
        num_heads=args.heads,
        num_layers=args.layers,
        text_dim=4096,
        text_len=512,
    )


def make_inputs(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    f, h, w = args.latent
    ctx = torch.zeros(args.batch, 512, 4096)
    ctx[:, :77] = torch.randn(args.batch, 77, 4096, generator=g)
    return {
        "x": torch.randn(args.batch, args.channels, f, h, w, generator=g),
        "t": torch.tensor([937.0] * args.batch),
        "context": ctx,
    }


def build_ours(cfg: TransformerConfig, state: dict[str, torch.Tensor], dtype: torch.dtype) -> WanTransformer:
    with torch.device("meta"):
        model = WanTransformer(cfg)
    model.load_state_dict(state, assign=True)
    return model.to(dtype).eval()


def build_diffusers(cfg: TransformerConfig, state: dict[str, torch.Tensor], dtype: torch.dtype) -> Any:
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel(
        patch_size=cfg.patch_size,
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim,
        out_channels=cfg.out_dim,
        text_dim=cfg.text_dim,
        freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=cfg.eps,
    )
    model.load_state_dict(official_to_diffusers_transformer_keys(state), strict=True)
    return model.to(dtype).eval()


def run(impl: str, model: Any, inputs: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    with torch.inference_mode():
        if impl == "ours":
            return model(inputs["x"], inputs["t"], inputs["context"])
        out = model(inputs["x"].to(dtype), inputs["t"], inputs["context"].to(dtype), return_dict=False)[0]
        return out.float()


# ---- peak memory (subprocess) -------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def measure_memory(impl: str, dtype_name: str, workdir: str, args: argparse.Namespace) -> None:
    """Subprocess body: print the forward's extra peak RSS in MiB as JSON."""
    cfg = make_config(args)
    state = torch.load(Path(workdir) / "weights.pt", weights_only=True)
    inputs = torch.load(Path(workdir) / "inputs.pt", weights_only=True)
    dtype = DTYPES[dtype_name]
    model = (build_ours if impl == "ours" else build_diffusers)(cfg, state, dtype)
    del state
    run(impl, model, inputs, dtype)  # warm-up (RoPE tables, kernel selection)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = _status_kib("VmRSS")
    out = run(impl, model, inputs, dtype)
    peak = _status_kib("VmHWM")
    del out
    print(json.dumps({"peak_mib": (peak - base) / 1024}))


def memory_in_subprocess(impl: str, dtype_name: str, workdir: str, argv: list[str]) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [sys.executable, __file__, *argv, "--_memory", impl, dtype_name, workdir]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return float(json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"])


# ---- main ---------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ffn-dim", type=int, default=2048)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--latent", type=int, nargs=3, default=(3, 32, 32), metavar=("F", "H", "W"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--_memory", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._memory:
        measure_memory(*args._memory, args=args)
        return

    argv = sys.argv[1:]
    cfg = make_config(args)
    torch.manual_seed(0)
    ours32 = WanTransformer(cfg).eval()  # random init (Xavier; the head is not zeroed)
    state = ours32.state_dict()
    inputs = make_inputs(args)
    f, h, w = args.latent
    tokens = f * (h // 2) * (w // 2)
    print(
        f"config: dim {cfg.dim} ({cfg.num_heads}x{cfg.head_dim}), ffn {cfg.ffn_dim}, {cfg.num_layers} layers, "
        f"text 512x4096, latent {args.batch}x{args.channels}x{f}x{h}x{w} = {tokens} tokens, "
        f"{count_parameters(ours32) / 1e6:.2f} M params, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        torch.save(state, Path(workdir) / "weights.pt")
        torch.save(inputs, Path(workdir) / "inputs.pt")
        for name in args.dtypes.split(","):
            dtype = DTYPES[name]
            models = {
                "ours": build_ours(cfg, copy.deepcopy(state), dtype),
                "diffusers": build_diffusers(cfg, copy.deepcopy(state), dtype),
            }
            outs = {k: run(k, m, inputs, dtype) for k, m in models.items()}  # warm-up
            diff = (outs["ours"] - outs["diffusers"]).abs().max().item()
            times: dict[str, list[float]] = {k: [] for k in models}
            for _ in range(args.iters):
                for k, m in models.items():
                    t0 = time.perf_counter()
                    run(k, m, inputs, dtype)
                    times[k].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) for k, v in times.items()}
            mem = {k: float("nan") for k in models}
            if not args.no_memory:
                mem = {k: memory_in_subprocess(k, name, workdir, argv) for k in models}
            rows.append((name, med, mem, diff))
            del models
            gc.collect()

    print()
    print(
        "| dtype | ours s/fwd | diffusers s/fwd | time ratio | ours peak MiB | diffusers peak MiB | memory ratio "
        "| max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, med, mem, diff in rows:
        print(
            f"| {name} | {med['ours']:.3f} | {med['diffusers']:.3f} | **{med['ours'] / med['diffusers']:.2f}** "
            f"| {mem['ours']:.0f} | {mem['diffusers']:.0f} | **{mem['ours'] / mem['diffusers']:.2f}** "
            f"| {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
