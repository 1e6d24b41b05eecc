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

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from model.cache_published import PUBLISHED_CALIBRATION
from model.cache_request import (
    CACHE_TYPES,
    CALIBRATION_FILE,
    CacheError,
    CacheSpec,
    load_calibration,
    resolve_cache,
    supported_types,
)

__all__ = [
    "CACHE_TYPES",
    "CALIBRATION_FILE",
    "CacheError",
    "CacheSpec",
    "StepCache",
    "PUBLISHED_CALIBRATION",
    "RunBlocks",
    "load_calibration",
    "resolve_cache",
    "supported_types",
]

# RunBlocks(h, start, stop, rows): run blocks[start:stop] on h (rows of the batch, or all if None).
RunBlocks = Callable[[Tensor, int, int, "list[int] | None"], Tensor]


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
