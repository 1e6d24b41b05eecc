"""Step caching: skip the transformer blocks on denoising steps that would change little.

Four decision rules share one mechanism. On a skipped step a CFG branch reuses the residual its
blocks added on its last computed step (``out = base + residual``):

* ``first_block`` — run block 0; skip the rest when the relative mean-absolute change of block 0's
  residual since the last computed step is ``<= threshold`` (diffusers' ``FirstBlockCacheConfig``
  rule; ``base`` is block 0's output). No warm-up unless a model's calibration sets one.
* ``teacache`` — accumulate ``poly(rel_l1(modulated input))`` over steps (the polynomial maps the
  change of the timestep embedding to the change of the output; coefficients published or
  calibrated); skip while the sum stays below the threshold, then reset it.
* ``magcache`` — multiply the calibrated per-step residual magnitude ratios, accumulate
  ``|1 - prod|``; skip while below the threshold; the first ``retention`` of each expert's steps run.
* ``easycache`` — from the last two computed steps, ``k = |d out| / |d in|`` (mean absolute
  values, as the paper); accumulate the predicted relative output change ``k * |d in| / |out|``;
  skip while below the threshold. The first ``warmup`` of the steps always run (the paper's
  ``ret_steps``: 10 of 50 for Wan2.1): the layout and the motion are settled there, and a reused
  residual in those steps is what costs prompt-following.

State is per request (one `StepCache` per `generate`), per CFG branch and per expert; the state of
an expert is dropped when the pipeline switches experts. The first and last steps always run, as
does any step after ``max_skips`` consecutive skips.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.cache_published import PUBLISHED_CALIBRATION

__all__ = [
    "CACHE_TYPES",
    "CALIBRATION_FILE",
    "CacheError",
    "CacheSpec",
    "StepCache",
    "PUBLISHED_CALIBRATION",
    "resolve_cache",
]

CACHE_TYPES: tuple[str, ...] = ("first_block", "teacache", "magcache", "easycache")
# Types that need per-model numbers (polynomial / ratios) before they can run.
NEEDS_CALIBRATION = frozenset({"teacache", "magcache"})
GENERIC_THRESHOLDS: dict[str, float] = {"first_block": 0.05, "easycache": 0.05}
# Leading share of the steps that always runs, unless the model's calibration says otherwise.
# EasyCache's paper keeps its first 10 of 50 steps; diffusers' First-Block Cache has no warm-up.
DEFAULT_WARMUP: dict[str, float] = {"easycache": 0.2}
CALIBRATION_FILE = "cache_calibration.json"  # beside the weights, written by model.cache_calibrate
THRESHOLD_RANGE = (0.0, 2.0)  # exclusive low, inclusive high
REFUSING_SAMPLERS = frozenset({"distill"})  # few-step samplers: nothing to skip at 4 steps

# RunBlocks(h, start, stop, rows): run blocks[start:stop] on h (rows of the batch, or all if None).
RunBlocks = Callable[[Tensor, int, int, "list[int] | None"], Tensor]


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


# --------------------------------------------------------------------------------------------------
# Per-branch state and decisions
# --------------------------------------------------------------------------------------------------


def _rel_l1(cur: Tensor, prev: Tensor) -> float:
    """mean|cur - prev| / mean|prev| (float64 scalar)."""
    return float((cur - prev).abs().mean() / prev.abs().mean())


def _interp(values: Sequence[float], n: int) -> list[float]:
    """Nearest-neighbour resampling of a per-step curve to n steps (calibrated at another count)."""
    if len(values) == n:
        return list(values)
    if n == 1:
        return [values[-1]]
    scale = (len(values) - 1) / (n - 1)
    return [values[round(i * scale)] for i in range(n)]


@dataclass
class BranchState:
    """What one CFG branch of one expert remembers between steps."""

    residual: Tensor | None = None  # what the skipped blocks added on the last computed step
    skips: int = 0  # consecutive skips so far
    prev_signal: Tensor | None = None  # first_block: block-0 residual; teacache: modulated input
    acc: float = 0.0  # accumulated estimate (teacache / magcache / easycache)
    acc_ratio: float = 1.0  # magcache: product of ratios since the last computed step
    prev_in: Tensor | None = None  # easycache: input on the previous step
    comp_in: Tensor | None = None  # easycache: input / output on the last computed step
    comp_out: Tensor | None = None
    k: float | None = None  # easycache: |d out| / |d in|
    trace: list[float] = field(default_factory=list)  # the decision signal per step (for tests)


class StepCache:
    """Cache state of one request. The pipeline calls `begin_step` before each transformer call;
    the transformer calls `run_blocks` instead of its block loop."""

    def __init__(self, spec: CacheSpec, num_steps: int) -> None:
        self.spec = spec
        self.num_steps = num_steps
        self._states: dict[tuple[int, str], BranchState] = {}
        self._expert = -1
        self._step = 0
        self._expert_step = 0
        self._expert_steps = num_steps
        self._branches: tuple[str, ...] = ("cond",)
        self._step_ran: dict[int, bool] = {}
        self.decisions: list[dict[str, bool]] = []  # per transformer call: branch -> computed
        self.decision_seconds = 0.0

    # -- bookkeeping ----------------------------------------------------------------------------
    def begin_step(
        self, step: int, expert: int, branches: Sequence[str], expert_step: int = 0, expert_steps: int = 0
    ) -> None:
        """Declare the next transformer call: step index (0-based), expert index, batch row names."""
        if expert != self._expert:  # the expert switch: the other expert's state means nothing here
            self._states.clear()
            self._expert = expert
        self._step = step
        self._expert_step = expert_step
        self._expert_steps = expert_steps or self.num_steps
        self._branches = tuple(branches)

    def state(self, branch: str, expert: int | None = None) -> BranchState:
        key = (self._expert if expert is None else expert, branch)
        if key not in self._states:
            self._states[key] = BranchState()
        return self._states[key]

    @property
    def steps_computed(self) -> int:
        return sum(self._step_ran.values())

    @property
    def steps_skipped(self) -> int:
        """Steps on which no branch ran the cached blocks."""
        return len(self._step_ran) - self.steps_computed

    @property
    def passes_computed(self) -> int:
        """Branch passes (one CFG branch at one step) that ran the blocks."""
        return sum(sum(d.values()) for d in self.decisions)

    @property
    def passes_skipped(self) -> int:
        return sum(len(d) for d in self.decisions) - self.passes_computed

    # -- the decision -----------------------------------------------------------------------------
    def _forced(self, st: BranchState) -> bool:
        return (
            st.residual is None
            or self._step == 0
            or self._step == self.num_steps - 1
            or st.skips >= self.spec.max_skips
            or self._step < math.ceil(self.spec.warmup * self.num_steps)
        )

    def _decide(self, st: BranchState, branch: str, signal: Tensor | None) -> bool:
        """-> True to compute the blocks for this branch. Updates the rule's accumulators."""
        s = self.spec
        forced = self._forced(st)
        if s.type == "first_block":
            assert signal is not None
            prev = st.prev_signal
            diff = math.inf if prev is None else _rel_l1(signal, prev)
            st.trace.append(diff)
            compute = forced or diff > s.threshold
            if compute:  # the reference residual moves only on computed steps
                st.prev_signal = signal
            return compute
        if s.type == "teacache":
            assert signal is not None
            prev, st.prev_signal = st.prev_signal, signal
            if prev is not None:
                rel = _rel_l1(signal, prev)
                st.acc += sum(c * rel**i for i, c in enumerate(reversed(s.coefficients)))
            st.trace.append(st.acc)
            if forced or st.acc >= s.threshold:
                st.acc = 0.0
                return True
            return False
        if s.type == "magcache":
            ratios = _interp(s.ratios.get(branch) or s.ratios["cond"], self.num_steps)
            st.acc_ratio *= ratios[self._step]
            st.acc += abs(1.0 - st.acc_ratio)
            st.trace.append(st.acc)
            share = s.retention if isinstance(s.retention, float) else s.retention[self._expert]
            retained = self._expert_step < math.ceil(share * self._expert_steps)
            if forced or retained or st.acc >= s.threshold:
                st.acc, st.acc_ratio = 0.0, 1.0
                return True
            return False
        # easycache
        assert signal is not None
        if st.k is not None and st.prev_in is not None and st.comp_out is not None:
            st.acc += st.k * float((signal - st.prev_in).abs().mean() / st.comp_out.abs().mean())
        st.prev_in = signal
        st.trace.append(st.acc)
        if forced or st.k is None or st.acc >= s.threshold:
            st.acc = 0.0
            return True
        return False

    def run_blocks(self, x: Tensor, e: Tensor, e0: Tensor, num_blocks: int, run: RunBlocks) -> Tensor:
        """Replace the block loop. x [B, L, dim] fp32 (rows = the declared branches); e [K, dim] and
        e0 [K, 6, dim] the time embeddings; ``run`` executes a range of blocks on some rows."""
        B = x.shape[0]
        branches = self._branches if len(self._branches) == B else tuple(f"row{i}" for i in range(B))
        if self.spec.type == "first_block":
            base = run(x, 0, 1, None)  # block 0 for every row: its residual is the signal
            start = 1
        else:
            base, start = x, 0
        tic = time.thread_time()
        states = [self.state(b) for b in branches]
        need: list[bool] = []
        for i, (b, st) in enumerate(zip(branches, states, strict=True)):
            if self.spec.type == "first_block":
                sig: Tensor | None = base[i] - x[i]
            elif self.spec.type == "teacache":
                sig = e0 if self.spec.teacache_input == "e0" else e
            elif self.spec.type == "easycache":
                sig = x[i]
            else:
                sig = None
            need.append(self._decide(st, b, sig))
        self.decision_seconds += time.thread_time() - tic
        rows = [i for i, n in enumerate(need) if n]
        out_rows: dict[int, Tensor] = {}
        if rows:
            sub = run(
                base if len(rows) == B else base[rows], start, num_blocks, None if len(rows) == B else rows
            )
            for j, i in enumerate(rows):
                st = states[i]
                st.residual = sub[j] - base[i]
                st.skips = 0
                out_rows[i] = sub[j]
                if self.spec.type == "easycache":
                    if st.comp_in is not None and st.comp_out is not None:
                        d_in = float((x[i] - st.comp_in).abs().mean())
                        st.k = float((sub[j] - st.comp_out).abs().mean()) / max(d_in, 1e-12)
                    st.comp_in, st.comp_out = x[i], sub[j]
        for i, n in enumerate(need):
            if not n:
                st = states[i]
                assert st.residual is not None
                out_rows[i] = base[i] + st.residual
                st.skips += 1
        self.decisions.append(dict(zip(branches, need, strict=True)))
        self._step_ran[self._step] = self._step_ran.get(self._step, False) or any(need)
        if len(rows) == B:
            return sub
        return torch.stack([out_rows[i] for i in range(B)])
