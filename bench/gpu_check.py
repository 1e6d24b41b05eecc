"""`make gpu-check`: the one prepared GPU script (no downloads, fits in ~8 minutes on one H200).

1. the GPU test tier (`tests/gpu`, run with `--noconftest` so the service packages need not be installed);
2. real-size random-weight DiT forwards in bf16: TI2V-5B and one A14B expert at 480p and 720p token
   counts, with SDPA (and flash-attn when installed), regionally compiled, FP8 (per-row dynamic),
   FP8 + compile: seconds per forward, peak memory, achieved TFLOP/s and MFU;
3. a JSON summary (`--out`, default `bench/gpu_check.json`) written after every case, so a run cut
   short by its time limit still leaves what it measured.

`--smoke` runs the same code at toy sizes on whatever device there is (CPU in the test suite), so the
script itself is tested where no GPU is lent. `--budget-s` bounds the forward section: cases that
would start after it are recorded as skipped.

    python bench/gpu_check.py --out bench/gpu_check.json          # on the GPU machine
    python bench/gpu_check.py --smoke --out /tmp/gpu_check.json   # anywhere
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import model.transformer as transformer_module  # noqa: E402
from model.fp8 import Fp8Unavailable, quantize_transformer_fp8  # noqa: E402
from model.transformer import T2V_A14B, TI2V_5B, TransformerConfig, WanTransformer  # noqa: E402

# Dense (no sparsity) peak of the H100/H200 SXM tensor cores, the denominators of MFU.
PEAK_TFLOPS = {"bf16": 989.0, "fp8": 1979.0}
TEXT_LEN = 512


@dataclass(frozen=True)
class Case:
    """One DiT at one video size: latent grid = frames/size through the VAE strides, then the patch."""

    model: str
    cfg: TransformerConfig
    label: str  # "480p" / "720p"
    frames: int
    width: int
    height: int
    vae_stride: tuple[int, int, int]

    @property
    def latent(self) -> tuple[int, int, int]:
        st, sh, sw = self.vae_stride
        return ((self.frames - 1) // st + 1, self.height // sh, self.width // sw)

    @property
    def tokens(self) -> int:
        f, h, w = self.latent
        pt, ph, pw = self.cfg.patch_size
        return (f // pt) * (h // ph) * (w // pw)


def real_cases() -> list[Case]:
    # TI2V-5B: Wan2.2 VAE (4, 16, 16), 121 frames at 24 fps; A14B: Wan2.1 VAE (4, 8, 8), 81 frames at 16 fps
    return [
        Case("ti2v-5b", TI2V_5B, "480p", 121, 832, 480, (4, 16, 16)),
        Case("ti2v-5b", TI2V_5B, "720p", 121, 1280, 704, (4, 16, 16)),
        Case("a14b-expert", T2V_A14B, "480p", 81, 832, 480, (4, 8, 8)),
        Case("a14b-expert", T2V_A14B, "720p", 81, 1280, 720, (4, 8, 8)),
    ]


def smoke_cases() -> list[Case]:
    small = replace(TI2V_5B, dim=128, ffn_dim=256, num_heads=4, num_layers=3, text_dim=64)
    return [Case("smoke-dit", small, "tiny", 9, 64, 64, (4, 16, 16))]


def forward_flops(cfg: TransformerConfig, tokens: int, text_len: int = TEXT_LEN) -> float:
    """Multiply-adds x2 of one forward at batch 1 (blocks only; embeddings and head are < 0.1%)."""
    d, f, L, Lc = cfg.dim, cfg.ffn_dim, tokens, text_len
    linear = 2 * L * d * d * 4  # self-attention q, k, v, o
    linear += 2 * L * d * d * 2 + 2 * Lc * d * d * 2  # cross-attention q, o on video; k, v on text
    linear += 2 * L * d * f * 2  # FFN
    attn = 4 * L * L * d + 4 * L * Lc * d  # QK^T and PV, self and cross
    return float(cfg.num_layers * (linear + attn))


def build_random_dit(cfg: TransformerConfig, device: torch.device, dtype: torch.dtype) -> WanTransformer:
    """A DiT with random weights built straight on the device (no CPU copy of 28 GB)."""
    with torch.device("meta"):
        dit = WanTransformer(cfg)
    dit.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in dit.named_parameters():
            fan_in = p.shape[-1] if p.dim() > 1 else p.numel()
            std = 1.0 / math.sqrt(max(fan_in, 1))
            if name.endswith("bias"):
                p.zero_()
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, std, generator=gen)
    return dit.to(dtype).eval()


def set_compiled(dit: WanTransformer, on: bool) -> None:
    """Regional compilation: each repeated block compiled; one graph reused across blocks."""
    for block in dit.blocks:
        if on:
            block.compile(dynamic=False)
        else:
            block._compiled_call_impl = None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(run: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, float]:
    """(seconds of the first call, mean seconds of `repeats` later calls)."""
    sync(device)
    t0 = time.perf_counter()
    run()
    sync(device)
    first = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        run()
    sync(device)
    return first, (time.perf_counter() - t0) / repeats


def run_case_variants(
    case: Case,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
    deadline: float,
    flash: bool,
    compiled_pass: bool,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    dit = build_random_dit(case.cfg, device, dtype)
    resident_gb = torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None
    f, h, w = case.latent
    gen = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(1, case.cfg.in_dim, f, h, w, generator=gen).to(device)
    ctx = torch.randn(1, TEXT_LEN, case.cfg.text_dim, generator=gen).to(device, dtype)
    t = torch.tensor([500.0], device=device)
    flops = forward_flops(case.cfg, case.tokens)
    saved_flash = transformer_module._FLASH_ATTN

    # (name, flash-attn, compiled, fp8); eager first, the compiled pass later (compiling costs the most)
    variants: list[tuple[str, bool, bool, bool]]
    if compiled_pass:
        variants = [("compile", flash, True, False), ("fp8+compile", flash, True, True)]
    else:
        variants = [("sdpa", False, False, False)]
        if flash:
            variants.append(("flash-attn", True, False, False))
        variants.append(("fp8", flash, False, True))
    quantized = False
    reference: torch.Tensor | None = None
    for name, use_flash, compiled, fp8 in variants:
        row: dict[str, Any] = {
            "model": case.model,
            "size": case.label,
            "resolution": f"{case.width}x{case.height}x{case.frames}",
            "tokens": case.tokens,
            "variant": name,
            "dtype": str(dtype).removeprefix("torch."),
        }
        if time.perf_counter() > deadline:
            row["skipped"] = "time budget spent"
            results.append(row)
            continue
        try:
            transformer_module._FLASH_ATTN = saved_flash if use_flash else None
            if fp8 and not quantized:
                set_compiled(dit, False)
                row["fp8_layers"] = quantize_transformer_fp8(dit, keep_edge_blocks=1)
                quantized = True
            set_compiled(dit, compiled)
            out: list[torch.Tensor] = []

            def run(out: list[torch.Tensor] = out) -> None:
                with torch.no_grad():
                    out[:] = [dit(x, t, ctx)]

            first, mean = time_forward(run, device, repeats)
            row["first_call_s"] = round(first, 4)
            row["forward_s"] = round(mean, 4)
            row["step_s_cfg"] = round(2 * mean, 4)  # a guided step = cond + uncond forwards
            tflops = flops / mean / 1e12
            row["tflops"] = round(tflops, 1)
            if device.type == "cuda":
                row["mfu"] = round(tflops / PEAK_TFLOPS["fp8" if fp8 else "bf16"], 3)
                row["peak_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                row["resident_gb"] = round(resident_gb or 0.0, 2)
                if fp8:
                    row["resident_gb_after_fp8"] = round(torch.cuda.memory_allocated(device) / 2**30, 2)
            y = out[0].float()
            if reference is None:
                reference = y
            else:
                rel = (y - reference).norm() / reference.norm().clamp(min=1e-12)
                row[f"rel_err_vs_{variants[0][0]}"] = float(f"{rel.item():.3e}")
        except Fp8Unavailable as exc:
            row["skipped"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - a failed variant is a result, the others still run
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        results.append(row)
    transformer_module._FLASH_ATTN = saved_flash
    set_compiled(dit, False)
    return results  # the caller frees the model's memory once this frame is gone


def run_gpu_tests(smoke: bool) -> dict[str, Any]:
    if smoke:
        return {"skipped": "smoke run"}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "--noconftest",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "tests/gpu",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return {"rc": proc.returncode, "seconds": round(time.perf_counter() - t0, 1), "tail": lines[-15:]}


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "flash_attn": transformer_module._FLASH_ATTN is not None,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        env["cuda"] = torch.version.cuda
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "gpu_check.json")
    ap.add_argument("--smoke", action="store_true", help="toy sizes on any device (tests the script)")
    ap.add_argument("--budget-s", type=float, default=360.0, help="time for the forward section")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", default="", help="comma list of model names to run (default all)")
    args = ap.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not args.smoke and device.type != "cuda":
        print("gpu-check: no CUDA device here; --smoke exercises the script on the CPU", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch._dynamo.config.cache_size_limit = 64
    dtype = torch.bfloat16
    summary: dict[str, Any] = {"environment": environment(device), "forwards": []}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")

    save()
    summary["gpu_tests"] = run_gpu_tests(args.smoke)
    save()
    print(json.dumps({"gpu_tests": summary["gpu_tests"]}, indent=2), flush=True)

    cases = smoke_cases() if args.smoke else real_cases()
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in cases if c.model in wanted]
    deadline = time.perf_counter() + args.budget_s
    for compiled_pass in (False, True):
        for case in cases:
            repeats = 1 if case.tokens > 50_000 else args.repeats
            rows = run_case_variants(
                case, device, dtype, repeats, deadline, summary["environment"]["flash_attn"], compiled_pass
            )
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            summary["forwards"].extend(rows)
            save()
            for row in rows:
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
