"""LoRA cost and few-step gain on one mid-size random DiT, all as ratios measured in the same run.

* time per forward with 0 / 1 / 3 LoRAs, unfused (low-rank branch hooks) vs fused (merged weights);
* switch cost: apply + remove of 1 and 3 LoRAs (unfused / fused), and reading one from disk;
* extra resident memory of each mode (LoRA tensors vs the kept original weights);
* transformer time per video: 4-step distill (no CFG, batch 1) vs the default 40 steps with CFG
  (batch 2), from the measured forward times.

LoRAs target every attention and FFN layer of every block (the Lightning layout) at a rank whose
share of `dim` matches rank 64 on A14B (64 / 5120 = 1.25 %) unless `--rank` is given.

    .venv/bin/python bench/bench_lora.py --threads 1            # CPU, ~2 minutes on a shared core
    .venv/bin/python bench/bench_lora.py --device cuda --dtype bf16 --dim 3072 --layers 8 --frames 21
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.lora import apply_loras, load_lora, parse_lora_state_dict  # noqa: E402
from model.transformer import TransformerConfig, WanTransformer  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def lora_sd(dit: WanTransformer, rank: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, mod in dit.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.startswith("blocks."):
            out_f, in_f = mod.weight.shape
            sd[f"diffusion_model.{name}.lora_down.weight"] = torch.randn(rank, in_f, generator=g) * 0.01
            sd[f"diffusion_model.{name}.lora_up.weight"] = torch.randn(out_f, rank, generator=g) * 0.01
            sd[f"diffusion_model.{name}.alpha"] = torch.tensor(float(rank))
    return sd


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Any, device: torch.device) -> float:
    """Seconds of one call: wall time on CUDA, process CPU time on CPU (robust to shared cores)."""
    sync(device)
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    t0 = clock()
    fn()
    sync(device)
    return clock() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--rank", type=int, default=0, help="0: dim * 64 / 5120 (the A14B share)")
    ap.add_argument("--frames", type=int, default=5, help="latent frames; tokens = frames * (size/2)^2")
    ap.add_argument("--size", type=int, default=32, help="latent height = width")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    rank = args.rank or max(1, round(args.dim * 64 / 5120))
    cfg = TransformerConfig(
        model_type="t2v", in_dim=16, out_dim=16, dim=args.dim, ffn_dim=int(args.dim * 2.7),
        num_heads=args.heads, num_layers=args.layers, text_dim=4096,
    )  # fmt: skip
    torch.manual_seed(0)
    dit = WanTransformer(cfg)
    dit.init_weights()
    dit = dit.to(device, dtype).eval()
    loras = [parse_lora_state_dict(lora_sd(dit, rank, s), f"l{s}") for s in range(3)]
    L = args.frames * (args.size // 2) ** 2

    def inputs(batch: int) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(1)
        x = torch.randn(batch, 16, args.frames, args.size, args.size, generator=g).to(device)
        ctx = torch.randn(batch, 512, 4096, generator=g).to(device, dtype)
        return x, torch.full((batch,), 900.0, device=device), ctx

    b1, b2 = inputs(1), inputs(2)

    def fwd(b: tuple[torch.Tensor, ...]) -> None:
        with torch.inference_mode():
            dit(*b)

    configs = {"0 LoRAs": (0, False), "1 unfused": (1, False), "3 unfused": (3, False)}
    configs |= {"1 fused": (1, True), "3 fused": (3, True)}
    times: dict[str, list[float]] = {k: [] for k in configs}
    fwd(b1)  # warm-up
    for _ in range(args.iters):  # interleave so that load changes hit every configuration alike
        for label, (n, fuse) in configs.items():
            with apply_loras(dit, [(w, 1.0) for w in loras[:n]], fuse=fuse):
                times[label].append(timed(lambda: fwd(b1), device))
    t_b2 = statistics.median(timed(lambda: fwd(b2), device) for _ in range(args.iters))

    switch: dict[str, float] = {}
    for label, (n, fuse) in configs.items():
        if n == 0:
            continue
        samples = []
        for _ in range(args.iters):

            def apply_remove(n: int = n, fuse: bool = fuse) -> None:
                apply_loras(dit, [(w, 1.0) for w in loras[:n]], fuse=fuse).remove()

            samples.append(timed(apply_remove, device))
        switch[label] = statistics.median(samples)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "l.safetensors"
        save_file(lora_sd(dit, rank, 9), str(path))
        t0 = time.perf_counter()
        load_lora(path)
        read_s = time.perf_counter() - t0

    base = statistics.median(times["0 LoRAs"])
    n_params = sum(p.numel() for p in dit.parameters())
    lora_bytes = loras[0].nbytes * torch.tensor([], dtype=dtype).element_size() // 4
    hooked = sum(
        m.weight.numel()
        for n, m in dit.named_modules()
        if isinstance(m, torch.nn.Linear) and n.startswith("blocks.")
    )
    print(f"device {device}, {args.dtype}, dim {args.dim}, layers {args.layers}, tokens {L}, "
          f"{n_params / 1e6:.1f} M params, LoRA rank {rank} on {hooked / n_params:.0%} of them, "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    print("| LoRAs | forward (s, median) | vs 0 LoRAs | apply + remove (s) |")
    print("|---|---|---|---|")
    for label in configs:
        t = statistics.median(times[label])
        sw = f"{switch[label]:.4f}" if label in switch else "-"
        print(f"| {label} | {t:.4f} | {t / base:.3f} | {sw} |")
    esize = torch.tensor([], dtype=dtype).element_size()
    kept = hooked * esize
    print(f"extra memory, 1 LoRA: unfused {lora_bytes / 1e6:.1f} MB (branch tensors in {args.dtype}); "
          f"fused {kept / 1e6:.1f} MB (kept originals; {kept / lora_bytes:.0f}x)")  # fmt: skip
    ratio = read_s / switch["1 unfused"]
    print(f"read one LoRA file from disk: {read_s:.4f} s ({ratio:.1f}x the unfused switch)")
    distill, default = 4 * base, 40 * t_b2
    print(f"transformer time per video: 4-step distill {distill:.3f} s (4 x batch-1 forward) vs 40 steps "
          f"with CFG {default:.3f} s (40 x batch-2 {t_b2:.4f} s): {default / distill:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
