"""DiT forward: our WanTransformer vs diffusers' WanTransformer3DModel, same config, same weights, same run.

Cases: ``t2v`` (16 channels, one timestep per sample) and ``ti2v`` (48 channels, per-token timesteps
with the first latent frame at t = 0, as TI2V-5B image mode feeds them), each in fp32 and bf16
(``.to(dtype)`` on both models; our model takes fp32 inputs, diffusers gets inputs in its dtype).

Time: both models live in this process; forwards alternate (ours, theirs, ours, ...) after a warm-up.
Two numbers per forward: the process CPU time (``time.process_time``; the headline ratio, because
on a machine whose cores are shared with other jobs it counts the work done, not the time spent
descheduled; run with ``--threads 1`` there) and the wall time (min and median of ``--iters``).

Peak memory: one fresh subprocess per (case, implementation) loads the same weights, runs a warm-up
forward, resets the kernel's RSS high-water mark (``/proc/self/clear_refs``) and reports
``VmHWM - VmRSS`` across one more forward: the extra resident memory the forward needs (activations,
temporaries, output). glibc serves every allocation over 64 KiB with mmap (``MALLOC_MMAP_THRESHOLD_``)
so freed memory leaves RSS and the number tracks live allocations.

    .venv/bin/python bench/bench_dit.py            # ~1-3 minutes on 2 shared CPU cores
"""

from __future__ import annotations

import argparse
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
CHANNELS = {"t2v": 16, "ti2v": 48}


def make_config(args: argparse.Namespace, task: str) -> TransformerConfig:
    return TransformerConfig(
        model_type=task,
        in_dim=CHANNELS[task],
        out_dim=CHANNELS[task],
        dim=args.dim,
        ffn_dim=args.ffn_dim,
        num_heads=args.heads,
        num_layers=args.layers,
        text_dim=4096,
        text_len=512,
    )


def make_inputs(args: argparse.Namespace, task: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    f, h, w = args.latent
    ctx = torch.zeros(args.batch, 512, 4096)
    ctx[:, :77] = torch.randn(args.batch, 77, 4096, generator=g)
    if task == "ti2v":  # per-token: 0 for the first latent frame's tokens, t elsewhere
        per_frame = (h // 2) * (w // 2)
        t = torch.full((args.batch, f * per_frame), 937.0)
        t[:, :per_frame] = 0.0
    else:
        t = torch.full((args.batch,), 937.0)
    x = torch.randn(args.batch, CHANNELS[task], f, h, w, generator=g)
    return {"x": x, "t": t, "context": ctx}


def build_ours(cfg: TransformerConfig, state: dict[str, torch.Tensor], dtype: torch.dtype) -> WanTransformer:
    with torch.device("meta"):
        model = WanTransformer(cfg)
    model.load_state_dict(state, assign=True)
    return model.to(dtype).eval()


def build_diffusers(cfg: TransformerConfig, state: dict[str, torch.Tensor], dtype: torch.dtype) -> Any:
    from diffusers import WanTransformer3DModel
    from diffusers.utils import logging

    logging.set_verbosity_error()  # silence the "_keep_in_fp32_modules cast by .to()" warning
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


BUILD = {"ours": build_ours, "diffusers": build_diffusers}


def run(impl: str, model: Any, inputs: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    with torch.inference_mode():
        if impl == "ours":
            return model(inputs["x"], inputs["t"], inputs["context"])
        x, ctx = inputs["x"].to(dtype), inputs["context"].to(dtype)
        return model(x, inputs["t"], ctx, return_dict=False)[0].float()


# ---- peak memory (one subprocess per measurement) -----------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def measure_memory(impl: str, task: str, dtype_name: str, workdir: str, args: argparse.Namespace) -> None:
    """Subprocess body: print the forward's extra peak RSS in MiB as JSON."""
    cfg = make_config(args, task)
    state = torch.load(Path(workdir) / f"{task}-weights.pt", weights_only=True)
    inputs = make_inputs(args, task)
    dtype = DTYPES[dtype_name]
    model = BUILD[impl](cfg, state, dtype)
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


def memory_in_subprocess(impl: str, task: str, dtype_name: str, workdir: str, argv: list[str]) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [sys.executable, __file__, *argv, "--_memory", impl, task, dtype_name, workdir]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return float(json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"])


# ---- main ---------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ffn-dim", type=int, default=2048)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--latent", type=int, nargs=3, default=(3, 32, 32), metavar=("F", "H", "W"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--cases", default="t2v:fp32,t2v:bf16,ti2v:fp32,ti2v:bf16")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--_memory", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._memory:
        impl, task, dtype_name, workdir = args._memory
        measure_memory(impl, task, dtype_name, workdir, args)
        return

    argv = [a for a in sys.argv[1:] if a != "--no-memory"]
    f, h, w = args.latent
    tokens = f * (h // 2) * (w // 2)
    cases = [tuple(c.split(":")) for c in args.cases.split(",")]
    print(
        f"config: dim {args.dim} ({args.heads} heads), ffn {args.ffn_dim}, {args.layers} layers, "
        "text 512x4096, "
        f"latent {args.batch}xCx{f}x{h}x{w} = {tokens} tokens/sample, "
        f"{count_parameters(WanTransformer(make_config(args, 't2v'))) / 1e6:.2f} M params (t2v); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, min/median of {args.iters}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        states = {}
        for task in sorted({c[0] for c in cases}):
            torch.manual_seed(0)
            states[task] = WanTransformer(
                make_config(args, task)
            ).state_dict()  # Xavier init, head not zeroed
            torch.save(states[task], Path(workdir) / f"{task}-weights.pt")
        for task, name in cases:
            cfg, dtype, inputs = make_config(args, task), DTYPES[name], make_inputs(args, task)
            models = {k: BUILD[k](cfg, {n: v.clone() for n, v in states[task].items()}, dtype) for k in BUILD}
            outs = {k: run(k, m, inputs, dtype) for k, m in models.items()}  # warm-up
            diff = (outs["ours"] - outs["diffusers"]).abs().max().item()
            times: dict[str, list[float]] = {k: [] for k in models}
            cpu: dict[str, list[float]] = {k: [] for k in models}
            for _ in range(args.iters):
                for k, m in models.items():
                    t0, c0 = time.perf_counter(), time.process_time()
                    run(k, m, inputs, dtype)
                    times[k].append(time.perf_counter() - t0)
                    cpu[k].append(time.process_time() - c0)
            mem = {k: float("nan") for k in models}
            if not args.no_memory:
                mem = {k: memory_in_subprocess(k, task, name, workdir, argv) for k in models}
            rows.append((f"{task} {name}", times, cpu, mem, diff))
            print(f"  done {task} {name}", flush=True)
            del models
            gc.collect()

    print()
    print(
        "| case | CPU s/fwd ours / diffusers (median) | **CPU ratio** | wall s/fwd min ours / diffusers ",
        end="",
    )
    print("| wall ratio (min) | peak MiB ours / diffusers | **memory ratio** | max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    for case, times, cpu, mem, diff in rows:
        c = {k: statistics.median(v) for k, v in cpu.items()}
        lo = {k: min(v) for k, v in times.items()}
        print(
            f"| {case} | {c['ours']:.3f} / {c['diffusers']:.3f} | **{c['ours'] / c['diffusers']:.2f}** "
            f"| {lo['ours']:.3f} / {lo['diffusers']:.3f} | {lo['ours'] / lo['diffusers']:.2f} "
            f"| {mem['ours']:.1f} / {mem['diffusers']:.1f} | **{mem['ours'] / mem['diffusers']:.2f}** "
            f"| {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
