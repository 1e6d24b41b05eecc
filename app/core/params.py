"""Resolve a create request against the chosen model's published constraints.

Duration mapping (documented in README.md): a request may give ``num_frames`` (must be 4n+1 within
the model's bounds) or ``seconds``; ``seconds`` maps to ``frames = 4*round(seconds*fps/4) + 1``; a duration
outside ``[min_num_frames, max_num_frames]`` is a 400 naming ``seconds`` (never a silent clamp: a client must
not pay for a video shorter than it asked for). The response's ``seconds`` reports the real duration
``frames / fps`` as a short decimal string (at most two decimals).

Guidance: ``guidance_scale`` sets every expert. For two-expert (A14B) models
``guidance_scale_high_noise`` applies to the high-noise expert (early steps, t >= boundary) and
``guidance_scale_low_noise`` to the low-noise expert (late steps); each overrides ``guidance_scale``.
"""

from __future__ import annotations

import math
import re
import secrets
from typing import Any

from app.core.errors import FieldError, InvalidInput
from app.core.schemas import ModelInfo, ResolvedParams, VideoCreate

_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")


def size_str(width: int, height: int) -> str:
    return f"{width}x{height}"


def seconds_to_frames(seconds: float, fps: int, lo: int, hi: int, *, long_videos: bool = False) -> int:
    """Frames of one clip for ``seconds`` at ``fps``; the one place that decides whether a model can
    make a duration. With ``long_videos`` (a model with an image mode) a duration beyond one clip is
    accepted here and answered with one clip's frames: `app.core.long_video` turns it into segments.
    """
    frames = 4 * math.floor(seconds * fps / 4 + 0.5) + 1
    if long_videos and frames > hi:
        return hi
    if not lo <= frames <= hi:
        longer = "; longer videos need a model with an image mode (I2V, TI2V)" if frames > hi else ""
        raise InvalidInput.field(
            "seconds",
            f"{seconds:g} s at {fps} fps is {frames} frames; this model makes {lo}-{hi} frames "
            f"({seconds_str(lo, fps)}-{seconds_str(hi, fps)} s){longer}",
        )
    return frames


def seconds_str(frames: int, fps: int) -> str:
    """A duration as the API answers it: a short decimal string ("5.06", "4", "0.38")."""
    return f"{round(frames / fps, 2):g}"


def _parse_seconds(value: float | str, errors: list[FieldError]) -> float | None:
    try:
        s = float(value)
    except ValueError:
        errors.append(FieldError("seconds", f"not a number: {value!r}"))
        return None
    if not math.isfinite(s) or s <= 0 or s > 3600:
        errors.append(FieldError("seconds", "must be a number of seconds in (0, 3600]"))
        return None
    return s


def _frames(req: VideoCreate, info: ModelInfo, fps: int, errors: list[FieldError]) -> int:
    lo, hi = info.min_num_frames, info.max_num_frames
    if req.num_frames is not None and req.seconds is not None:
        errors.append(FieldError("seconds", "give either seconds or num_frames, not both"))
        return info.default_num_frames
    if req.num_frames is not None:
        n = req.num_frames
        if (n - 1) % 4 != 0 or not lo <= n <= hi:
            errors.append(FieldError("num_frames", f"must be 4n+1 within [{lo}, {hi}] for {info.model_id}"))
        return n
    if req.seconds is not None:
        s = _parse_seconds(req.seconds, errors)
        if s is None:
            return info.default_num_frames
        try:
            return seconds_to_frames(s, fps, lo, hi, long_videos=info.image_input != "none")
        except InvalidInput as exc:
            errors.extend(exc.errors)
            return info.default_num_frames
    return info.default_num_frames


def _size(req: VideoCreate, info: ModelInfo, errors: list[FieldError]) -> tuple[int, int]:
    if req.size is None:
        return info.default_size
    supported = ", ".join(size_str(w, h) for w, h in info.sizes)
    m = _SIZE_RE.match(req.size)
    if m is None:
        errors.append(FieldError("size", f"expected WIDTHxHEIGHT, one of: {supported}"))
        return info.default_size
    wh = (int(m.group(1)), int(m.group(2)))
    if wh not in [tuple(s) for s in info.sizes]:
        errors.append(
            FieldError("size", f"{req.size} is not supported by {info.model_id}; one of: {supported}")
        )
    return wh


def _guidance(req: VideoCreate, info: ModelInfo, errors: list[FieldError]) -> list[float]:
    if info.num_experts == 1:
        for name in ("guidance_scale_high_noise", "guidance_scale_low_noise"):
            if getattr(req, name) is not None:
                errors.append(FieldError(name, f"{info.model_id} has one expert; use guidance_scale"))
        return [req.guidance_scale] if req.guidance_scale is not None else list(info.default_guidance_scale)
    low, high = info.default_guidance_scale[0], info.default_guidance_scale[-1]
    if req.guidance_scale is not None:
        low = high = req.guidance_scale
    if req.guidance_scale_low_noise is not None:
        low = req.guidance_scale_low_noise
    if req.guidance_scale_high_noise is not None:
        high = req.guidance_scale_high_noise
    return [low, high]


CACHE_TYPES = ("first_block", "teacache", "magcache", "easycache")  # mirrors model.cache
CACHE_THRESHOLD_MAX = 2.0
NO_CACHE_SAMPLERS = frozenset({"distill"})  # few-step sampling: nothing to skip


def _cache(
    req: VideoCreate, info: ModelInfo, sampler: str, errors: list[FieldError]
) -> dict[str, Any] | None:
    if req.cache is None:
        return None
    kind, thr = req.cache.type, req.cache.threshold
    if kind not in CACHE_TYPES:
        errors.append(FieldError("cache.type", f"one of: {', '.join(CACHE_TYPES)}"))
        return None
    if sampler in NO_CACHE_SAMPLERS:
        errors.append(FieldError("cache", f"step caching is not available with the {sampler} sampler"))
        return None
    if kind not in info.cache_types:
        errors.append(
            FieldError("cache.type", f"{kind} is not calibrated for {info.model_id}; "
                       f"available: {', '.join(info.cache_types) or 'none'}")
        )  # fmt: skip
        return None
    if thr is None:
        thr = info.cache_types[kind]
    if not math.isfinite(thr) or not 0 < thr <= CACHE_THRESHOLD_MAX:
        errors.append(FieldError("cache.threshold", f"must be in (0, {CACHE_THRESHOLD_MAX}]"))
        return None
    return {"type": kind, "threshold": thr}


def resolve(req: VideoCreate, info: ModelInfo, *, has_image: bool) -> ResolvedParams:
    """Validate ``req`` against ``info``; raise `InvalidInput` listing every bad field."""
    errors: list[FieldError] = []
    width, height = _size(req, info, errors)
    fps = req.fps or info.fps
    num_frames = _frames(req, info, fps, errors)
    steps = req.num_inference_steps or info.default_num_steps
    if not 1 <= steps <= info.max_num_steps:
        errors.append(FieldError("num_inference_steps", f"must be within [1, {info.max_num_steps}]"))
    sampler = req.sampler or info.default_sampler
    if sampler not in info.samplers:
        errors.append(FieldError("sampler", f"one of: {', '.join(info.samplers)}"))
    guidance = _guidance(req, info, errors)
    cache = _cache(req, info, sampler, errors)
    if info.image_input == "required" and not has_image:
        errors.append(FieldError("input_reference", f"{info.model_id} needs an input image"))
    if info.image_input == "none" and has_image:
        errors.append(FieldError("input_reference", f"{info.model_id} does not take an input image"))
    if errors:
        raise InvalidInput("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)
    return ResolvedParams(
        width=width,
        height=height,
        num_frames=num_frames,
        fps=fps,
        num_inference_steps=steps,
        guidance_scale=guidance,
        shift=req.shift if req.shift is not None else info.default_shift,
        sampler=sampler,
        seed=req.seed if req.seed is not None else secrets.randbelow(2**31),
        negative_prompt=req.negative_prompt,
        has_image=has_image,
        cache=cache,
    )
