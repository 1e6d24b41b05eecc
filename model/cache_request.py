"""Step-cache requests: validate ``{"type": T, "threshold": x}`` against a model -> `CacheSpec`.

A type runs on a model when it needs no per-model numbers (first_block, easycache) or when the
model has them: published (`model.cache_published`) or calibrated (``cache_calibration.json``
beside the weights, written by `model.cache_calibrate`). The calibration may also set a type's
default threshold, warm-up and skip cap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.cache_published import PUBLISHED_CALIBRATION

__all__ = [
    "CACHE_TYPES",
    "CALIBRATION_FILE",
    "CacheError",
    "CacheSpec",
    "load_calibration",
    "resolve_cache",
    "supported_types",
]

CACHE_TYPES: tuple[str, ...] = ("first_block", "teacache", "magcache", "easycache")
GENERIC_THRESHOLDS: dict[str, float] = {"first_block": 0.05, "easycache": 0.05}
# Leading share of the steps that always runs, unless the model's calibration says otherwise.
# EasyCache's paper keeps its first 10 of 50 steps; diffusers' First-Block Cache has no warm-up.
DEFAULT_WARMUP: dict[str, float] = {"easycache": 0.2}
CALIBRATION_FILE = "cache_calibration.json"  # beside the weights, written by model.cache_calibrate
THRESHOLD_RANGE = (0.0, 2.0)  # exclusive low, inclusive high
REFUSING_SAMPLERS = frozenset({"distill"})  # few-step samplers: nothing to skip at 4 steps


class CacheError(ValueError):
    """A cache request that cannot be honoured; ``field`` names the offending part."""

    def __init__(self, message: str, field: str = "cache") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class CacheSpec:
    """A resolved cache request."""

    type: str
    threshold: float
    max_skips: int = 3  # consecutive skipped steps per branch before one must run
    coefficients: tuple[float, ...] = ()  # teacache polynomial, highest degree first
    teacache_input: str = "e0"
    ratios: Mapping[str, Sequence[float]] = field(default_factory=dict)  # magcache, per branch
    # magcache: leading fraction of each expert's steps that always runs (one value, or one per expert)
    retention: float | tuple[float, ...] = 0.2
    warmup: float = 0.0  # leading fraction of all steps that always runs (first_block, easycache)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "threshold": self.threshold}


def load_calibration(folder: Path | None) -> dict[str, Any] | None:
    """The calibration record in a weights folder, or None when there is none."""
    if folder is None or not (folder / CALIBRATION_FILE).is_file():
        return None
    record: dict[str, Any] = json.loads((folder / CALIBRATION_FILE).read_text())
    return record


def supported_types(model_id: str, calibration: Mapping[str, Any] | None) -> dict[str, float]:
    """Cache type -> default threshold, for the types this model can run."""
    out = dict(GENERIC_THRESHOLDS)
    merged = {**PUBLISHED_CALIBRATION.get(model_id, {}), **(calibration or {})}
    for t in CACHE_TYPES:
        entry = merged.get(t)
        if isinstance(entry, Mapping) and "threshold" in entry:
            out[t] = float(entry["threshold"])
    return {t: out[t] for t in CACHE_TYPES if t in out}


def resolve_cache(
    cache: Mapping[str, Any] | None,
    model_id: str,
    calibration: Mapping[str, Any] | None = None,
    sampler: str = "unipc",
    image: bool = False,
) -> CacheSpec | None:
    """Validate a ``{"type": T, "threshold": x}`` request against a model -> `CacheSpec` (or None).
    ``image``: the request conditions on an image (MagCache ratios may differ by mode)."""
    if cache is None:
        return None
    if not isinstance(cache, Mapping):
        raise CacheError(f"cache must be an object with 'type' and optional 'threshold', got {cache!r}")
    unknown = set(cache) - {"type", "threshold", "max_skips"}
    if unknown:
        raise CacheError(f"cache has unknown keys {sorted(unknown)}")
    kind = cache.get("type")
    if kind not in CACHE_TYPES:
        raise CacheError(f"cache.type must be one of {list(CACHE_TYPES)}, got {kind!r}", "cache.type")
    if sampler in REFUSING_SAMPLERS:
        raise CacheError(f"step caching is not available with the few-step {sampler!r} sampler", "cache")
    defaults = supported_types(model_id, calibration)
    if kind not in defaults:
        raise CacheError(
            f"cache type {kind!r} is not calibrated for model {model_id!r}; run "
            f"`wanserve calibrate --model {model_id}` first",
            "cache.type",
        )
    thr = cache.get("threshold")
    if thr is None:
        thr = defaults[kind]
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not math.isfinite(thr):
        raise CacheError(f"cache.threshold must be a number, got {thr!r}", "cache.threshold")
    lo, hi = THRESHOLD_RANGE
    if not lo < float(thr) <= hi:
        raise CacheError(f"cache.threshold must be in ({lo}, {hi}], got {thr!r}", "cache.threshold")
    merged = {**PUBLISHED_CALIBRATION.get(model_id, {}), **(calibration or {})}
    entry = merged.get(kind, {})
    max_skips = cache.get("max_skips", entry.get("max_skips", 3))
    if isinstance(max_skips, bool) or not isinstance(max_skips, int) or max_skips < 1:
        raise CacheError(f"cache.max_skips must be a positive integer, got {max_skips!r}", "cache.max_skips")
    if kind == "teacache":
        return CacheSpec(
            kind, float(thr), max_skips, coefficients=tuple(float(c) for c in entry["coefficients"]),
            teacache_input=str(entry.get("input", "e0")),
        )  # fmt: skip
    if kind == "magcache":
        source = entry["ratios_image"] if image and "ratios_image" in entry else entry["ratios"]
        ratios = {str(b): [float(r) for r in v] for b, v in source.items()}
        kept = entry.get("retention", 0.2)
        retention = tuple(float(r) for r in kept) if isinstance(kept, list) else float(kept)
        return CacheSpec(kind, float(thr), max_skips, ratios=ratios, retention=retention)
    warmup = float(entry.get("warmup", DEFAULT_WARMUP.get(kind, 0.0)))
    if not 0.0 <= warmup < 1.0:
        raise CacheError(f"the {kind} calibration of {model_id!r} has warmup {warmup} outside [0, 1)")
    return CacheSpec(kind, float(thr), max_skips, warmup=warmup)
