"""Cheap live previews: a linear projection of a (predicted clean) latent to RGB.

A VAE latent is close to linear in colour at its own resolution, so ``rgb = latent @ W + b``
(``W`` [C, 3], ``b`` [3], latents normalised as the DiT sees them, RGB in [-1, 1]) shows the
picture forming at a cost of one tiny matmul instead of a VAE decode.

Factors, first found wins:
1. ``preview_rgb.json`` beside the weights (written by ``python -m model.preview_fit FOLDER``, a
   least-squares fit on VAE encodes, `fit_latent_rgb`);
2. the published factors of the official VAEs (full-size Wan2.1 VAE, z 16; Wan2.2 VAE, z 48): the
   ``latent_rgb_factors`` / ``latent_rgb_factors_bias`` of ComfyUI's ``comfy/latent_formats.py``
   (classes ``Wan21`` and ``Wan22``), which act on the same normalised latents;
3. none: no previews for that model.

A step's latent x_t is mostly noise early on; the preview projects the predicted clean latent
``x0 = x_t - sigma * v`` (flow matching) instead, which shows the final composition from the
first steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PREVIEW_FILE",
    "LatentRGB",
    "fit_latent_rgb",
    "load_latent_rgb",
    "pick_frames",
    "pixel_targets",
    "preview_frames",
    "published_latent_rgb",
]

PREVIEW_FILE = "preview_rgb.json"
_FACTORS_FILE = Path(__file__).with_name("preview_factors.json")  # the published numbers


@dataclass(frozen=True)
class LatentRGB:
    """``rgb = latent @ weight + bias`` per latent pixel; weight [C][3], bias [3]."""

    weight: tuple[tuple[float, float, float], ...]
    bias: tuple[float, float, float]
    source: str = ""

    @property
    def channels(self) -> int:
        return len(self.weight)

    def as_json(self) -> dict[str, Any]:
        return {"weight": [list(r) for r in self.weight], "bias": list(self.bias), "source": self.source}

    def rounded(self, digits: int) -> LatentRGB:
        w = tuple((round(r[0], digits), round(r[1], digits), round(r[2], digits)) for r in self.weight)
        b = self.bias
        return LatentRGB(w, (round(b[0], digits), round(b[1], digits), round(b[2], digits)), self.source)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LatentRGB:
        weight = tuple((float(r[0]), float(r[1]), float(r[2])) for r in d["weight"])
        b = d.get("bias") or (0.0, 0.0, 0.0)
        if not weight or any(len(r) != 3 for r in d["weight"]) or len(b) != 3:
            raise ValueError("latent-RGB factors must be [C][3] with a bias of 3")
        return cls(weight, (float(b[0]), float(b[1]), float(b[2])), str(d.get("source", "")))

    def apply(self, latent: torch.Tensor) -> torch.Tensor:
        """[C, T, h, w] (or [1, C, T, h, w]) -> [3, T, h, w] float32, roughly in [-1, 1]."""
        return self.apply_batch(latent if latent.ndim == 5 else latent[None])[0]

    def apply_batch(self, latent: torch.Tensor) -> torch.Tensor:
        """[N, C, T, h, w] -> [N, 3, T, h, w] float32."""
        if latent.shape[1] != self.channels:
            raise ValueError(f"latent has {latent.shape[1]} channels, the factors {self.channels}")
        w = torch.tensor(self.weight, dtype=torch.float32, device=latent.device)  # [C, 3]
        b = torch.tensor(self.bias, dtype=torch.float32, device=latent.device)
        return torch.einsum("ncthw,cr->nrthw", latent.float(), w) + b[:, None, None, None]


def pixel_targets(video: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
    """The colour each latent pixel stands for: [N, 3, F, H, W] -> [N, 3, T', h, w].

    Latent frame 0 holds pixel frame 0 alone and latent frame k the ``st`` frames before
    ``1 + k * st`` (the Wan VAEs' causal layout); each is averaged in time and over its
    ``sh x sw`` block.
    """
    st, sh, sw = stride
    n, c, f, hh, ww = video.shape
    first = video[:, :, :1]
    rest = video[:, :, 1:].reshape(n, c, (f - 1) // st, st, hh, ww).mean(dim=3)
    frames = torch.cat([first, rest], dim=2)  # [N, 3, T', H, W]
    t = frames.shape[2]
    pooled = F.avg_pool2d(frames.transpose(1, 2).reshape(n * t, c, hh, ww), (sh, sw))
    return pooled.reshape(n, t, c, hh // sh, ww // sw).transpose(1, 2)


def fit_latent_rgb(
    latents: torch.Tensor, targets: torch.Tensor, *, ridge: float = 1e-3, source: str = ""
) -> LatentRGB:
    """Least squares ``targets ~ latents @ W + b`` over every latent pixel (a small ridge keeps
    unused channels at ~0). latents [N, C, T, h, w], targets [N, 3, T, h, w] in [-1, 1]."""
    c = latents.shape[1]
    x = latents.transpose(0, 1).reshape(c, -1).T.double()  # [P, C]
    y = targets.transpose(0, 1).reshape(3, -1).T.double()  # [P, 3]
    xa = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    gram = xa.T @ xa
    gram[:c, :c] += ridge * x.shape[0] * torch.eye(c, dtype=x.dtype)  # the bias is not shrunk
    sol = torch.linalg.solve(gram, xa.T @ y)  # [C + 1, 3]
    weight = tuple((float(r[0]), float(r[1]), float(r[2])) for r in sol[:c])
    b = sol[c]
    return LatentRGB(weight, (float(b[0]), float(b[1]), float(b[2])), source)


def published_latent_rgb(vae: Any) -> LatentRGB | None:
    """The published factors for a full-size official VAE, else None."""
    cfg = getattr(vae, "config", None)
    if cfg is None:
        return None
    default = type(cfg)()
    if (cfg.dim, cfg.z_dim, tuple(cfg.dim_mult)) != (default.dim, default.z_dim, tuple(default.dim_mult)):
        return None  # a tiny / custom VAE: the published numbers describe another latent space
    from model.vae22 import Wan22VAE

    kind = "wan2.2" if isinstance(vae, Wan22VAE) else "wan2.1"
    table = json.loads(_FACTORS_FILE.read_text())
    return LatentRGB.from_json(table[kind])


def load_latent_rgb(folder: Path | None, vae: Any) -> LatentRGB | None:
    """Fitted factors beside the weights when present and matching the VAE, else the published ones."""
    if folder is not None and (folder / PREVIEW_FILE).is_file():
        fitted = LatentRGB.from_json(json.loads((folder / PREVIEW_FILE).read_text()))
        if fitted.channels == int(vae.config.z_dim):
            return fitted
    return published_latent_rgb(vae)


def pick_frames(t: int, max_frames: int) -> list[int]:
    """Up to ``max_frames`` of ``t`` frame indices, spread from the first to the last."""
    k = max(1, min(max_frames, t))
    return torch.linspace(0, t - 1, k).round().long().tolist()


def preview_frames(rgb: torch.Tensor, *, max_frames: int = 4, max_side: int = 128) -> np.ndarray:
    """[3, T, h, w] in [-1, 1] -> uint8 [K, H', W', 3]: K <= max_frames latent frames spread over
    the clip (`pick_frames`), each upsampled (bilinear) so that its longest side is ``max_side``."""
    frames = rgb[:, pick_frames(rgb.shape[1], max_frames)].transpose(0, 1)  # [K, 3, h, w]
    h, w = frames.shape[-2:]
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    up = F.interpolate(frames.float(), size=size, mode="bilinear", align_corners=False)
    out = ((up.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return out.permute(0, 2, 3, 1).cpu().numpy()
