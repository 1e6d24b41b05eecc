"""Whole tiny pipeline time: wanserve vs diffusers 0.42.1, same weights, same run.

Each case builds a tiny random diffusers pipeline, saves it, loads the folder with
`model.load_pipeline` and times a full call (text encoding, sampling loop with CFG, VAE decode) of
both, interleaved, after one warm-up call each. diffusers gets the official Wan sigma grid so both
do the same work. Also times the built-in tiny presets that service tests use.

    .venv/bin/python bench/bench_pipeline.py [--repeats 5] [--threads 2] [--config dev|mid] \\
        [--variants fp32,fp32-stock-conv,bf16] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _scheduler(shift: float) -> Any:
    from diffusers import UniPCMultistepScheduler

    s = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=shift
    )
    stock = s.set_timesteps

    def set_timesteps(num_inference_steps=None, device=None, sigmas=None, mu=None):  # type: ignore[no-untyped-def]
        if sigmas is None:
            sigmas = np.linspace(1.0 - 1.0 / 1000, 0.0, num_inference_steps + 1)[:-1]
        return stock(num_inference_steps=num_inference_steps, device=device, sigmas=sigmas, mu=mu)

    s.set_timesteps = set_timesteps
    return s


def _build(kind: str, dit_dim: int = 32, layers: int = 2, vae_dim: int = 0) -> Any:
    """A tiny random diffusers pipeline; `vae_dim` > 0: the official Wan2.1 VAE topology at that
    base width (dim_mult 1,2,4,4, 2 res blocks), else the 4-wide one-level toy VAE."""
    import diffusers
    from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    te = UMT5EncoderModel(
        UMT5Config(
            vocab_size=384,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            dropout_rate=0.0,
            feed_forward_proj="gated-gelu",
        )  # fmt: skip
    ).eval()

    def dit(cin: int, cout: int) -> Any:
        return diffusers.WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=dit_dim // 2, in_channels=cin,
            out_channels=cout, text_dim=32, freq_dim=256, ffn_dim=2 * dit_dim, num_layers=layers,
        ).eval()  # fmt: skip

    if kind == "ti2v":
        vae = diffusers.AutoencoderKLWan(
            base_dim=4, decoder_base_dim=4, z_dim=48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
            is_residual=True, in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16,
            latents_mean=[0.0] * 48, latents_std=[1.0] * 48,
        )  # fmt: skip
        return diffusers.WanPipeline(
            tokenizer=ByT5Tokenizer(), text_encoder=te, vae=vae.eval(), scheduler=_scheduler(5.0),
            transformer=dit(48, 48), expand_timesteps=True,
        )  # fmt: skip
    if vae_dim:
        vae = diffusers.AutoencoderKLWan(base_dim=vae_dim, z_dim=16).eval()
    else:
        vae = diffusers.AutoencoderKLWan(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1).eval()
    if kind == "t2v-a14b":
        return diffusers.WanPipeline(
            tokenizer=ByT5Tokenizer(), text_encoder=te, vae=vae, scheduler=_scheduler(12.0),
            transformer=dit(16, 16), transformer_2=dit(16, 16), boundary_ratio=0.875,
        )  # fmt: skip
    return diffusers.WanImageToVideoPipeline(
        tokenizer=ByT5Tokenizer(), text_encoder=te, vae=vae, scheduler=_scheduler(5.0),
        transformer=dit(36, 16), transformer_2=dit(36, 16), boundary_ratio=0.9,
    )  # fmt: skip


def _time(fn: Any, repeats: int, warmup: bool = True) -> tuple[float, float]:
    """Median (wall s, process CPU s) over `repeats` calls. CPU time is less sensitive to other
    processes on a shared machine than wall time."""
    if warmup:
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def _set_stock_conv(stock: bool) -> None:
    """Before/after switch: our causal convs through stock `conv3d` (PyTorch's heuristic picks
    `slow_conv3d` for these shapes) or straight to oneDNN (the default)."""
    from model import vae21, vae22

    vae21.CausalConv3d.onednn = vae22.CausalConv3d.onednn = not stock


def _case(
    kind: str,
    h: int,
    w: int,
    shift: float,
    g: tuple[float, float],
    *,
    folder: Path,
    steps: int,
    repeats: int,
    text_cache: bool,
    frames: int = 9,
    build: dict[str, int] | None = None,
    variants: tuple[str, ...] = ("fp32",),
) -> None:
    """Time one tiny diffusers pipeline against the same weights loaded by `load_pipeline`.

    `variants` of ours: `fp32`, `fp32-stock-conv` (the causal convs before the oneDNN routing),
    `bf16` (DiT and text encoder in bfloat16, VAE in float32).
    """
    from model import load_pipeline

    ref = _build(kind, **(build or {}))
    ref.set_progress_bar_config(disable=True)
    ref.save_pretrained(str(folder))
    ours = {
        v: load_pipeline(str(folder), dtype=torch.bfloat16 if v == "bf16" else torch.float32)
        for v in variants
    }
    if not text_cache:
        for pipe in ours.values():
            pipe.text_cache_size = 0
    img = (
        torch.rand(3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
        if kind == "i2v-a14b"
        else None
    )
    common: dict[str, Any] = dict(height=h, width=w, num_frames=frames)
    ref_kw: dict[str, Any] = dict(
        prompt="a fox in the snow", negative_prompt="blurry", num_inference_steps=steps,
        guidance_scale=g[1], output_type="pt", **common,
    )  # fmt: skip
    if ref.config.boundary_ratio is not None:
        ref_kw["guidance_scale_2"] = g[0]
    if img is not None:
        ref_kw["image"] = img[None]
    guidance = g if ref.config.boundary_ratio is not None else g[1]

    def run_ref() -> torch.Tensor:
        _set_stock_conv(False)
        with torch.no_grad():
            out = ref(**ref_kw, generator=torch.Generator().manual_seed(1)).frames[0]
        return out.permute(1, 0, 2, 3) * 2 - 1  # type: ignore[no-any-return]

    def run_ours(variant: str) -> torch.Tensor:
        _set_stock_conv(variant == "fp32-stock-conv")
        try:
            return ours[variant].generate(
                "a fox in the snow", negative_prompt="blurry", image=img, num_steps=steps,
                guidance_scale=guidance, shift=shift, seed=1, **common,
            )  # fmt: skip
        finally:
            _set_stock_conv(False)

    video = run_ref()  # also the warm-up
    diffs = {v: (run_ours(v) - video).abs().max().item() for v in variants}
    t_ref: list[tuple[float, float]] = []
    t_ours: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for _ in range(repeats):  # interleaved, so all see the same machine noise
        for v in variants:
            t_ours[v].append(_time(partial(run_ours, v), 1, warmup=False))
        t_ref.append(_time(run_ref, 1, warmup=False))
    bw, bc = (statistics.median(x) for x in zip(*t_ref, strict=True))
    for v in variants:
        aw, ac = (statistics.median(x) for x in zip(*t_ours[v], strict=True))
        print(
            f"{kind:<10} {v:<15} {w}x{h}x{frames}  {aw:9.3f} {bw:10.3f} {aw / bw:6.2f} "
            f"{ac:9.3f} {bc:9.3f} {ac / bc:6.2f} {diffs[v]:9.1e}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument(
        "--no-text-cache", action="store_true", help="re-encode prompts on every call, as diffusers"
    )
    ap.add_argument(
        "--config",
        choices=("dev", "mid"),
        default="dev",
        help="dev: the three toy pipelines; mid: T2V-A14B-shaped, dim-256 DiTs (4 layers), "
        "base-dim-16 Wan2.1 VAE (official topology), 128x128x17",
    )
    ap.add_argument(
        "--variants",
        default="fp32",
        help="ours, comma-separated: fp32, fp32-stock-conv (before the oneDNN conv routing), bf16",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()

    from model import load_pipeline

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU fp32, {args.steps} steps, "
        f"CFG on, text cache {'off' if args.no_text_cache else 'on'}"
    )
    print(
        f"{'case':<10} {'ours':<15} {'size':<9} {'ours wall':>9} {'diff. wall':>10} {'ratio':>6} "
        f"{'ours cpu':>9} {'diff. cpu':>9} {'ratio':>6} {'max|diff|':>9}"
    )
    variants = tuple(args.variants.split(","))
    if args.config == "mid":
        with tempfile.TemporaryDirectory() as tmp:
            _case(
                "t2v-a14b", 128, 128, 12.0, (3.0, 4.0), folder=Path(tmp) / "mid", steps=args.steps,
                repeats=args.repeats, text_cache=not args.no_text_cache, frames=17,
                build=dict(dit_dim=256, layers=4, vae_dim=16), variants=variants,
            )  # fmt: skip
        return
    with tempfile.TemporaryDirectory() as tmp:
        for kind, case in {
            "t2v-a14b": (32, 48, 12.0, (3.0, 4.0)),
            "i2v-a14b": (32, 48, 5.0, (3.5, 3.5)),
            "ti2v": (64, 64, 5.0, (5.0, 5.0)),
        }.items():
            _case(
                kind, *case, folder=Path(tmp) / kind, steps=args.steps, repeats=args.repeats,
                text_cache=not args.no_text_cache, variants=variants,
            )  # fmt: skip

    print()
    print(f"{'tiny preset':<14} {'size':<8} {'wall s':>7} {'cpu s':>7}  (4 steps, CFG)")
    for name in ("tiny-t2v-a14b", "tiny-i2v-a14b", "tiny-ti2v"):
        pipe = load_pipeline(name)
        img = torch.zeros(3, 32, 32) if pipe.preset.image_input != "none" else None
        kw = dict(height=32, width=32, num_frames=5, num_steps=4, shift=5.0, seed=0)
        tw, tc = _time(
            partial(
                pipe.generate, "a cat", image=img, guidance_scale=pipe.preset.default_guidance_scale, **kw
            ),
            args.repeats,
        )
        print(f"{name:<14} {'32x32x5':<8} {tw:7.3f} {tc:7.3f}")


if __name__ == "__main__":
    main()
