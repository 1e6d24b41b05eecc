"""Evaluation helpers for the demo world: what colour is the object, where does it go, how close is a frame.

All functions take videos as ``[3, F, H, W]`` arrays/tensors in ``[-1, 1]`` (the pipeline's output).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.demo.world import COLORS, DIRECTIONS


def _to_numpy(video: Any) -> np.ndarray:
    if hasattr(video, "detach"):
        video = video.detach().float().cpu().numpy()
    return np.asarray(video, dtype=np.float32)


def _to_unit(video: Any) -> np.ndarray:
    """[3, F, H, W] in [-1, 1] -> [F, H, W, 3] in [0, 1]."""
    v = _to_numpy(video)
    if v.ndim == 3:  # a single image [3, H, W]
        v = v[:, None]
    return np.clip((v.transpose(1, 2, 3, 0) + 1.0) / 2.0, 0.0, 1.0)


def estimate_background(frame: np.ndarray) -> np.ndarray:
    """Background of one frame [H, W, 3] (in [0, 1]) as a least-squares plane fitted to its border.

    Handles plain and linear-gradient backgrounds; a robust second pass drops border pixels the
    object may cover.
    """
    h, w, _ = frame.shape
    ys, xs = np.mgrid[0:h, 0:w]
    border = np.zeros((h, w), bool)
    border[:2, :] = border[-2:, :] = border[:, :2] = border[:, -2:] = True
    A = np.stack([np.ones(h * w), xs.ravel() / w, ys.ravel() / h], 1)
    Ab = A[border.ravel()]
    pix = frame.reshape(-1, 3)[border.ravel()]
    coef, *_ = np.linalg.lstsq(Ab, pix, rcond=None)
    resid = np.linalg.norm(Ab @ coef - pix, axis=1)
    keep = resid <= max(np.percentile(resid, 75), 0.05)
    coef, *_ = np.linalg.lstsq(Ab[keep], pix[keep], rcond=None)
    bg: np.ndarray = (A @ coef).reshape(h, w, 3)
    return bg


def foreground_weights(video: Any, threshold: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel foreground strength [F, H, W] (0 where below threshold) and the frames [F, H, W, 3]."""
    frames = _to_unit(video)
    diffs = np.empty(frames.shape[:3], np.float32)
    for f in range(frames.shape[0]):
        bg = estimate_background(frames[f])
        diffs[f] = np.linalg.norm(frames[f] - bg, axis=-1)
    weights = np.where(diffs > threshold, diffs, 0.0)
    return weights, frames


def dominant_color(video: Any, threshold: float = 0.25) -> str | None:
    """Palette colour most of the non-background pixels are closest to (None if nothing is there)."""
    weights, frames = foreground_weights(video, threshold)
    sel = weights > 0
    if not sel.any():
        return None
    pix = frames[sel]
    wts = weights[sel]
    names = list(COLORS)
    pal = np.asarray([COLORS[n] for n in names], np.float32)
    idx = np.argmin(np.linalg.norm(pix[:, None, :] - pal[None], axis=2), axis=1)
    votes = np.bincount(idx, weights=wts, minlength=len(names))
    return names[int(np.argmax(votes))]


def centroid_track(video: Any, threshold: float = 0.25) -> np.ndarray:
    """Foreground centroid (x, y) in pixels per frame, [F, 2]; NaN for frames without foreground."""
    weights, _ = foreground_weights(video, threshold)
    n, h, w = weights.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.full((n, 2), np.nan, np.float32)
    for f in range(n):
        tot = float(weights[f].sum())
        if tot > 0:
            out[f, 0] = float((weights[f] * (xs + 0.5)).sum() / tot)
            out[f, 1] = float((weights[f] * (ys + 0.5)).sum() / tot)
    return out


def displacement(video: Any, threshold: float = 0.25) -> np.ndarray:
    """Centroid displacement over the clip (x, y), from a least-squares line through the track."""
    track = centroid_track(video, threshold)
    valid = ~np.isnan(track[:, 0])
    if valid.sum() < 2:
        return np.zeros(2, np.float32)
    t = np.arange(len(track), dtype=np.float32)[valid]
    slope = np.polyfit(t, track[valid], 1)[0]
    return (slope * (len(track) - 1)).astype(np.float32)


def direction_error_deg(disp: np.ndarray, direction: str) -> float:
    dx, dy = DIRECTIONS[direction]
    norm = float(np.linalg.norm(disp))
    if norm == 0:
        return 180.0
    cos = float((disp[0] * dx + disp[1] * dy) / norm)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def moves_in_direction(
    video: Any, direction: str, *, min_pixels: float | None = None, max_angle_deg: float = 30.0
) -> bool:
    """The centroid moves at least ``min_pixels`` (default 8 % of the width) within ``max_angle_deg``
    of the named direction."""
    v = _to_numpy(video)
    if min_pixels is None:
        min_pixels = 0.08 * v.shape[-1]
    disp = displacement(v)
    return bool(np.linalg.norm(disp) >= min_pixels and direction_error_deg(disp, direction) <= max_angle_deg)


def psnr(a: Any, b: Any) -> float:
    """PSNR in dB between two images/videos in [-1, 1] (peak-to-peak range 2)."""
    x = _to_numpy(a).astype(np.float64)
    y = _to_numpy(b).astype(np.float64)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0:
        return float("inf")
    return 10.0 * math.log10(4.0 / mse)


@dataclass
class ClipScore:
    prompt: str
    color: str | None
    displacement: tuple[float, float]
    color_ok: bool
    direction_ok: bool

    @property
    def ok(self) -> bool:
        return self.color_ok and self.direction_ok


def score_clip(video: Any, prompt: str, color: str, direction: str) -> ClipScore:
    got = dominant_color(video)
    disp = displacement(video)
    return ClipScore(
        prompt=prompt,
        color=got,
        displacement=(float(disp[0]), float(disp[1])),
        color_ok=got == color,
        direction_ok=moves_in_direction(video, direction),
    )


# ------------------------------------------------------------------------------------------------
# Fixed evaluation sets (used by tests/model/test_demo_quality.py and the training script)

TEXT_BACKGROUNDS = ("black", "gray", "navy")


def text_cases(n: int = 24) -> list[tuple[str, str, str, str, int]]:
    """(colour, shape, direction, background, seed): every colour, shape and direction is covered."""
    from training.demo.world import COLOR_NAMES, DIRECTION_NAMES, SHAPES

    out = []
    for i in range(n):
        out.append(
            (
                COLOR_NAMES[i % 8],
                SHAPES[i % 3],
                DIRECTION_NAMES[(3 * i + i // 8) % 8],
                TEXT_BACKGROUNDS[(i // 8) % 3],
                1000 + i,
            )
        )
    return out


def image_cases(n: int = 8) -> list[tuple[str, str, str, str, int]]:
    from training.demo.world import COLOR_NAMES, DIRECTION_NAMES, SHAPES

    return [
        (
            COLOR_NAMES[(5 * i + 2) % 8],
            SHAPES[(i + 1) % 3],
            DIRECTION_NAMES[(5 * i + 1) % 8],
            ("black", "gray")[i % 2],
            2000 + i,
        )
        for i in range(n)
    ]


def paraphrase_cases(n: int = 24) -> list[tuple[str, str, str, str, int]]:
    """(prompt, colour, shape, direction, seed) of the held-out paraphrase set: every prompt uses a verb
    (and often a direction phrasing, adjective, number or background phrasing) that no training caption
    uses (`training.demo.captions.HELD_OUT`); no held-out combination is asked for."""
    from training.demo.captions import is_held_out_combo, paraphrase
    from training.demo.world import COLOR_NAMES, DIRECTION_NAMES, SHAPES

    rng = np.random.default_rng(np.random.SeedSequence([31, n]))
    out = []
    for i in range(n):
        colour, shape = COLOR_NAMES[(3 * i + 1) % 8], SHAPES[(i + 2) % 3]
        k = 0
        while is_held_out_combo(colour, shape, DIRECTION_NAMES[(5 * i + k) % 8]):
            k += 1
        direction = DIRECTION_NAMES[(5 * i + k) % 8]
        background = TEXT_BACKGROUNDS[(i // 3) % 3]
        stated = background if rng.random() < 0.7 else None
        out.append((paraphrase(colour, shape, direction, stated, rng), colour, shape, direction, 3000 + i))
    return out


def combination_cases(n: int = 24) -> list[tuple[str, str, str, str, int]]:
    """(prompt, colour, shape, direction, seed) of the held-out combination set: the (colour, shape,
    direction) triples of `training.demo.captions.HELD_OUT_COMBOS`, which no caption of the text
    encoder's alignment describes (and, with ``--hold-out-combos``, no training clip shows), phrased
    with the training grammar; beyond the 24 triples the set repeats them with other phrasings and
    seeds."""
    from training.demo.captions import HELD_OUT_COMBOS, training_caption

    combos = sorted(HELD_OUT_COMBOS)
    rng = np.random.default_rng(np.random.SeedSequence([32, n]))
    out = []
    for i in range(n):
        colour, shape, direction = combos[i % len(combos)]
        background = TEXT_BACKGROUNDS[i % 3]
        stated = background if rng.random() < 0.7 else None
        prompt = training_caption(colour, shape, direction, stated, "medium", rng, pseudo=0.0)
        out.append((prompt, colour, shape, direction, 4000 + i))
    return out


def evaluate_prompts(pipe: Any, cases: list[tuple[str, str, str, str, int]], **gen: Any) -> list[ClipScore]:
    """Text mode on (prompt, colour, shape, direction, seed) cases."""
    scores = []
    for prompt, color, _shape, direction, seed in cases:
        video = pipe.generate(prompt, seed=seed, **gen)
        scores.append(score_clip(video, prompt, color, direction))
    return scores


def evaluate_text_mode(pipe: Any, cases: list[tuple[str, str, str, str, int]], **gen: Any) -> list[ClipScore]:
    """Text mode on the fixed set's (colour, shape, direction, background, seed), canonical phrasing."""
    from training.demo.world import simple_caption

    prompts = [(simple_caption(c, s, d, bg), c, s, d, seed) for c, s, d, bg, seed in cases]
    return evaluate_prompts(pipe, prompts, **gen)


def confusion(scores: list[ClipScore]) -> dict[str, int]:
    """How the clips that miss go wrong: colour only, direction only, or both."""
    return {
        "ok": sum(s.ok for s in scores),
        "colour_only": sum(not s.color_ok and s.direction_ok for s in scores),
        "direction_only": sum(s.color_ok and not s.direction_ok for s in scores),
        "both": sum(not s.color_ok and not s.direction_ok for s in scores),
    }


@dataclass
class ImageScore:
    clip: ClipScore
    psnr: float


def evaluate_image_mode(
    pipe: Any, cases: list[tuple[str, str, str, str, int]], **gen: Any
) -> list[ImageScore]:
    import torch

    from training.demo.world import make_single_clip

    scores = []
    for color, shape, direction, background, seed in cases:
        clip = make_single_clip(color, shape, direction, background=background, seed=seed)
        image = torch.from_numpy(clip.video[:, 0].copy())  # [3, H, W] in [-1, 1]
        video = pipe.generate(clip.caption, image=image, seed=seed, **gen)
        scores.append(ImageScore(score_clip(video, clip.caption, color, direction), psnr(video[:, 0], image)))
    return scores


# ------------------------------------------------------------------------------------------------
# Denoising cost (the few-step LoRA's time ratio, tests/model/test_demo_lightning.py)

COST_PROMPT = "a red circle moves to the left on a black background"


def denoise_cost(pipe: Any, prompt: str = COST_PROMPT, seed: int = 5, **gen: Any) -> tuple[int, float]:
    """(DiT forwards weighted by batch size, seconds from the first forward's start to the last one's
    end) of one generation: the denoising loop without text encoding and VAE decoding."""
    import time

    samples = 0
    first = last = 0.0

    def pre(module: Any, args: tuple[Any, ...]) -> None:
        nonlocal samples, first
        if samples == 0:
            first = time.perf_counter()
        samples += int(args[0].shape[0])

    def post(module: Any, args: tuple[Any, ...], out: Any) -> None:
        nonlocal last
        last = time.perf_counter()

    dit = pipe.transformer
    handles = [dit.register_forward_pre_hook(pre), dit.register_forward_hook(post)]
    try:
        pipe.generate(prompt, seed=seed, **gen)
    finally:
        for h in handles:
            h.remove()
    return samples, last - first
