"""Fit a VAE's latent-to-RGB preview factors once and write them beside its weights.

    python -m model.preview_fit wanserve-demo            # -> model/demo/weights/preview_rgb.json
    python -m model.preview_fit /ckpt/Wan2.2-TI2V-5B --clips 64 --device cuda

The VAE encodes synthetic clips (coloured shapes moving over gradients, seeded); the factors are
the least-squares map from each latent pixel to the mean colour of the pixels it stands for
(`model.preview.fit_latent_rgb`). The VAE is convolutional, so small clips (8x8 latent pixels,
5 latent frames by default) fit the same map as full-size ones.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.preview import PREVIEW_FILE, LatentRGB, fit_latent_rgb, pixel_targets, published_latent_rgb


def synthetic_clips(n: int, frames: int, height: int, width: int, *, seed: int = 0) -> torch.Tensor:
    """n clips [n, 3, F, H, W] in [-1, 1]: a two-colour gradient and 1-3 moving discs / boxes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((n, 3, frames, height, width), np.float32)
    for i in range(n):
        c0, c1 = rng.random(3), rng.random(3)
        ang = rng.random() * 2 * math.pi
        ramp = (np.cos(ang) * xx / width + np.sin(ang) * yy / height + 1) / 2  # ~[0, 1]
        bg = c0[:, None, None] * (1 - ramp) + c1[:, None, None] * ramp
        shapes = [
            (rng.random(3), rng.random(2) * (width, height), (rng.random(2) - 0.5) * (width, height) / frames,
             (0.1 + 0.25 * rng.random()) * min(width, height), bool(rng.random() < 0.5))
            for _ in range(int(rng.integers(1, 4)))
        ]  # fmt: skip
        for f in range(frames):
            img = bg.copy()
            for color, pos, vel, r, disc in shapes:
                cx, cy = pos + vel * f
                if disc:
                    mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
                else:
                    mask = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
                img[:, mask] = color[:, None]
            out[i, :, f] = img
    return torch.from_numpy(out * 2 - 1)


@torch.no_grad()
def fit_vae(
    vae: Any, stride: tuple[int, int, int], *, clips: int = 64, latent_hw: int = 8, latent_t: int = 5,
    seed: int = 0, batch: int = 8,
) -> tuple[LatentRGB, float]:  # fmt: skip
    """-> (factors, RMSE of the fit in [-1, 1] units) for ``vae`` (normalised latents)."""
    st, sh, sw = stride
    frames, height, width = 1 + st * (latent_t - 1), latent_hw * sh, latent_hw * sw
    video = synthetic_clips(clips, frames, height, width, seed=seed)
    p = next(vae.parameters())
    lat = torch.cat([
        vae.encode(video[i : i + batch].to(p.device, p.dtype)).float().cpu() for i in range(0, clips, batch)
    ])  # fmt: skip
    target = pixel_targets(video, stride)
    fitted = fit_latent_rgb(
        lat, target, source=f"least squares on {clips} synthetic clips (model.preview_fit)"
    )
    rmse = float((fitted.apply_batch(lat) - target).pow(2).mean().sqrt())
    return fitted, rmse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.preview_fit", description=__doc__.split("\n")[0])
    ap.add_argument("model", help="checkpoint folder or built-in name (e.g. wanserve-demo)")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help=f"default: FOLDER/{PREVIEW_FILE}")
    args = ap.parse_args(argv)
    from model.loading import checkpoint_dir, load_pipeline

    folder = checkpoint_dir(args.model)
    out = args.out or (folder / PREVIEW_FILE if folder else None)
    if out is None:
        ap.error(f"{args.model!r} has no weights folder; pass --out")
    pipe = load_pipeline(args.model, device=args.device)
    fitted, rmse = fit_vae(pipe.vae, pipe.preset.vae_stride, clips=args.clips, seed=args.seed)
    out.write_text(json.dumps(fitted.rounded(6).as_json()) + "\n")
    print(f"wrote {out}: {fitted.channels} channels, fit RMSE {rmse:.4f} (RGB in [-1, 1])")  # noqa: T201
    known = published_latent_rgb(pipe.vae)
    if known is not None:
        video = synthetic_clips(8, 1 + pipe.preset.vae_stride[0] * 4, 64, 64, seed=args.seed + 1)
        p = next(pipe.vae.parameters())
        lat = pipe.vae.encode(video.to(p.device, p.dtype)).float().cpu()
        err = (known.apply_batch(lat) - pixel_targets(video, pipe.preset.vae_stride)).pow(2).mean().sqrt()
        print(f"published factors on the same VAE: RMSE {float(err):.4f}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
