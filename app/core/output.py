"""Output frame rate and size beyond the model's own (gateway side; the worker: `worker.postprocess`).

* ``fps`` above the model's rate: the model generates at its own rate (``parameters.fps``; the
  ``seconds`` mapping uses it) and the worker interpolates to ``parameters.output_fps`` with FFmpeg's
  motion-compensated ``minterpolate``, or with the learned RIFE interpolator when the model's
  workers publish ``interpolation: "rife"`` (``parameters.interpolation``). The MP4 then has
  ``(num_frames - 1) * output_fps // fps + 1`` frames spanning the same instants. An ``fps`` at or
  below the model's rate keeps its old meaning (the MP4's rate and the ``seconds`` mapping).
* ``size`` above the model's sizes: 1.5x or 2x a native size per side (exact aspect ratio, even
  sides; `/v1/models` lists them as ``upscale_sizes``); the model generates at the native size and
  the worker upscales with Lanczos (``parameters.output_width/output_height``, ``parameters.upscaler``),
  then, with ``upscale_refine`` (a strength), runs the model once more at the target size as a
  low-strength video-to-video pass (``parameters.refine_strength``; one clip, sides a multiple of
  the model's spatial multiple).
"""

from __future__ import annotations

import math
import re

from app.core.errors import InvalidInput
from app.core.schemas import ModelInfo, ResolvedParams, VideoCreate

_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")


UPSCALE_FACTORS = (1.5, 2.0)


def _upscaled(w: int, h: int) -> list[tuple[int, int]]:
    """The 1.5x and 2x sizes of (w, h) whose sides are even and keep the exact aspect ratio."""
    out = []
    for k in UPSCALE_FACTORS:
        w2, h2 = int(w * k), int(h * k)
        if w2 % 2 == 0 and h2 % 2 == 0 and w2 * h == h2 * w:
            out.append((w2, h2))
    return out


def upscale_base(size: tuple[int, int], sizes: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The native size that ``size`` is a listed upscale of (largest native first), if any."""
    fits = [(w, h) for w, h in sizes if size in _upscaled(w, h)]
    return max(fits, key=lambda wh: wh[0] * wh[1]) if fits else None


def upscale_sizes(sizes: list[tuple[int, int]]) -> list[str]:
    out: list[str] = []
    for w, h in sizes:
        for w2, h2 in _upscaled(w, h):
            if f"{w2}x{h2}" not in out and (w2, h2) not in sizes:
                out.append(f"{w2}x{h2}")
    return out


def split_size(req: VideoCreate, info: ModelInfo) -> tuple[VideoCreate, tuple[int, int] | None]:
    """A request for an upscaled size -> (the request at the native size, the output size)."""
    m = _SIZE_RE.match(req.size or "")
    if m is None:
        return req, None
    wh = (int(m.group(1)), int(m.group(2)))
    sizes = [(int(w), int(h)) for w, h in info.sizes]
    if wh in sizes:
        return req, None
    base = upscale_base(wh, sizes)
    if base is None:
        return req, None  # `resolve` reports the size as unsupported
    return req.model_copy(update={"size": f"{base[0]}x{base[1]}"}), wh


def apply_output(
    req: VideoCreate, info: ModelInfo, params: ResolvedParams, out_size: tuple[int, int] | None
) -> ResolvedParams:
    update: dict[str, object] = {}
    if out_size is not None:
        update.update(output_width=out_size[0], output_height=out_size[1], upscaler="lanczos")
    if req.upscale_refine is not None:
        mult = info.vae_stride[1] * info.patch_size[1]
        if out_size is None:
            raise InvalidInput.field(
                "upscale_refine", f"needs an upscaled size (one of {upscale_sizes(info.sizes)})"
            )
        if out_size[0] % mult or out_size[1] % mult:
            raise InvalidInput.field(
                "upscale_refine", f"the model refines only sizes that are multiples of {mult}"
            )
        update["refine_strength"] = req.upscale_refine
    if req.fps is not None and req.fps > info.fps:
        update.update(fps=info.fps, output_fps=req.fps, interpolation=info.interpolation)
        if req.seconds is not None and req.num_frames is None:  # the mapping runs at the model's rate
            s = float(req.seconds)
            frames = 4 * math.floor(s * info.fps / 4 + 0.5) + 1
            update["num_frames"] = max(info.min_num_frames, min(info.max_num_frames, frames))
    return params.model_copy(update=update) if update else params


def output_frames(p: ResolvedParams) -> int:
    if p.output_fps and p.output_fps > p.fps:
        return (p.num_frames - 1) * p.output_fps // p.fps + 1
    return p.num_frames
