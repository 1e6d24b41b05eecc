"""VAE decode peak memory vs frame count: ours (streaming) against diffusers' AutoencoderKLWan.

Both models share the same weights (ours, default init; diffusers gets them through
``official_to_diffusers_vae2x_keys`` with ``assign=True``, so nothing is copied). Peak memory is
the high-water mark of live CPU-allocator bytes during one ``decode`` call, reconstructed from the
torch profiler's allocation events; the weights (allocated before) are not counted. "excl. output"
subtracts the returned video tensor, i.e. the working memory that should stay flat.

    .venv/bin/python bench/bench_vae.py     # both VAEs, widths / 6, 64x64 px, 17/33/65 frames (~minutes)
    .venv/bin/python bench/bench_vae.py --width-div 1 --size 32 --frames 17 33   # official widths
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.vae21 import Wan21VAE, Wan21VAEConfig, official_to_diffusers_vae21_keys  # noqa: E402
from model.vae22 import Wan22VAE, Wan22VAEConfig, official_to_diffusers_vae22_keys  # noqa: E402

MB = 1024 * 1024


def peak_cpu_bytes(fn: Callable[[], torch.Tensor]) -> tuple[int, torch.Tensor]:
    """(peak live allocator bytes during fn(), fn's result)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    cur = peak = 0
    for ev in sorted(prof.events(), key=lambda e: e.time_range.start):
        cur += ev.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak, result


def build(vae: str, div: int) -> tuple[Wan21VAE | Wan22VAE, torch.nn.Module]:
    """Both models at the official config with every width divided by ``div``, same weights."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    if vae == "2.1":
        ours: Wan21VAE | Wan22VAE = Wan21VAE(Wan21VAEConfig(dim=96 // div))
        kw: dict[str, object] = {"base_dim": 96 // div, "z_dim": 16}
        sd = official_to_diffusers_vae21_keys(ours.state_dict())
    else:
        c = Wan22VAEConfig(dim=160 // div, dec_dim=256 // div)
        ours = Wan22VAE(c)
        kw = {"base_dim": c.dim, "decoder_base_dim": c.dec_dim, "z_dim": 48, "is_residual": True,
              "in_channels": 12, "out_channels": 12, "patch_size": 2, "scale_factor_spatial": 16,
              "latents_mean": list(c.latents_mean), "latents_std": list(c.latents_std)}  # fmt: skip
        sd = official_to_diffusers_vae22_keys(ours.state_dict())
    with torch.device("meta"):
        ref = AutoencoderKLWan(**kw)
    ref.load_state_dict(sd, strict=True, assign=True)
    return ours.eval(), ref.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vae", nargs="+", default=["2.1", "2.2"], choices=["2.1", "2.2"])
    ap.add_argument("--frames", nargs="+", type=int, default=[17, 33, 65])
    ap.add_argument("--size", type=int, default=64, help="video height = width in pixels (multiple of 16)")
    ap.add_argument(
        "--width-div", type=int, default=6, help="divide every channel width by this (1: official)"
    )
    ap.add_argument(
        "--frames-per-step",
        type=int,
        default=1,
        help="ours: frames per step of the decoder tail (1: accelerator default, 0: CPU default)",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {threads} threads, fp32 CPU, widths = official / {args.width_div}, "
        f"ours frames_per_step={args.frames_per_step}"
    )
    print(
        "| VAE | frames x px | latent | ours peak MB | ours excl. output MB | diffusers peak MB "
        "| diffusers excl. output MB | ours s | diffusers s | max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.vae:
        ours, ref = build(name, args.width_div)
        ours.decoder.frames_per_step = args.frames_per_step
        cfg = ours.config
        px = args.size
        n = px // cfg.scale_factor_spatial
        mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)
        inv_std = 1.0 / torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)
        for frames in args.frames:
            f = 1 + (frames - 1) // 4
            z = torch.randn(1, cfg.z_dim, f, n, n, generator=torch.Generator().manual_seed(0))
            out_mb = 3 * frames * px * px * 4 / MB
            t0 = time.perf_counter()
            p_ours, v_ours = peak_cpu_bytes(lambda z=z, m=ours: m.decode(z))
            t1 = time.perf_counter()
            with torch.no_grad():
                p_ref, v_ref = peak_cpu_bytes(
                    lambda z=z, m=ref, a=inv_std, b=mean: m.decode(z / a + b).sample
                )
            t2 = time.perf_counter()
            diff = (v_ours - v_ref).abs().max().item()
            cells = [
                f"Wan{name}", f"{frames} x {px}x{px}", f"{f}x{n}x{n}", f"{p_ours / MB:.1f}",
                f"{p_ours / MB - out_mb:.1f}", f"{p_ref / MB:.1f}", f"{p_ref / MB - out_mb:.1f}",
                f"{t1 - t0:.1f}", f"{t2 - t1:.1f}", f"{diff:.1e}",
            ]  # fmt: skip
            print("| " + " | ".join(cells) + " |", flush=True)
        del ours, ref


if __name__ == "__main__":
    main()
