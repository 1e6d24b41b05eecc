"""Calibrate step caching for one model: TeaCache polynomial, MagCache ratios, default thresholds.

``python -m model.cache_calibrate --model M`` (what ``wanserve calibrate`` runs; M: a checkpoint
folder or a built-in preset name) runs a few prompts at the preset's default steps / shift / sampler
(or ``--steps``) with every block computed, recording per CFG branch and step:

* TeaCache: x = relative L1 change of the modulated input (``e0``, the time_projection output),
  y = relative L1 change of the block-stack output; a degree-4 polynomial y ~ poly(x) is fitted;
* MagCache: the ratio of mean per-token residual norms ``|out - in|`` of step i to step i-1,
  averaged over the prompts (step 0 has ratio 1);

then picks, per type, the smallest threshold of a grid that skips at least ``target_skip`` of the
block work on the same prompts (branch passes skipped; first_block always runs block 0, so it
needs ``target_skip / (1 - 1/num_layers)`` of the passes), or, where the warm-up and the skip cap
keep every threshold below that, the smallest threshold that skips as much as any. The result goes to
``cache_calibration.json`` beside the weights, where `load_pipeline` finds it.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from model.cache import CACHE_TYPES, CALIBRATION_FILE, RunBlocks, _rel_l1

__all__ = ["Recorder", "calibrate", "main"]

DEFAULT_PROMPTS = (
    "a red circle moves right on a black background",
    "a blue square moves up on a gray background",
    "a green triangle moves down-left on a navy background",
)
# Leading share of the steps that always runs. EasyCache: its paper's warm-up (10 of 50 steps).
# First-Block Cache has none upstream; on the demo model (20 steps) skipping in the first two steps
# cost prompt-following (bench/RESULTS.md), so calibrated models keep 10 %.
FIRST_BLOCK_WARMUP = 0.1
EASYCACHE_WARMUP = 0.2
PLATEAU = 0.01  # skip fractions this close to the largest count as the same
THRESHOLD_GRID: dict[str, tuple[float, ...]] = {
    "first_block": (0.02, 0.03, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
    "teacache": (0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.26, 0.3, 0.4, 0.5, 0.7, 1.0),
    "magcache": (0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5, 0.8, 1.0),
    "easycache": (0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8, 1.0),
}


class Recorder:
    """A stand-in for `StepCache` that runs every block and records the calibration signals."""

    def __init__(self) -> None:
        self._branches: tuple[str, ...] = ("cond",)
        self._step = 0
        self.prev: dict[str, tuple[Tensor, Tensor, Tensor]] = {}  # branch -> (e0, out, residual)
        self.tea: list[tuple[float, float]] = []  # (input change, output change)
        self.mag: dict[str, dict[int, float]] = {}  # branch -> step -> ratio

    def begin_step(self, step: int, expert: int, branches: Sequence[str], *_: int) -> None:
        if step == 0:
            self.prev.clear()
        self._step, self._branches = step, tuple(branches)

    def run_blocks(self, x: Tensor, e: Tensor, e0: Tensor, num_blocks: int, run: RunBlocks) -> Tensor:
        out = run(x, 0, num_blocks, None)
        for i, b in enumerate(self._branches):
            res = out[i] - x[i]
            if b in self.prev:
                pe0, pout, pres = self.prev[b]
                self.tea.append((_rel_l1(e0, pe0), _rel_l1(out[i], pout)))
                ratio = float((res.norm(dim=-1) / pres.norm(dim=-1)).mean())
            else:
                ratio = 1.0
            self.mag.setdefault(b, {}).setdefault(self._step, 0.0)
            self.mag[b][self._step] += ratio
            self.prev[b] = (e0, out[i], res)
        return out


def _skip_fraction(pipe: Any, prompts: Sequence[str], cache: Any, gen: dict[str, Any]) -> float:
    """Fraction of branch passes skipped over the prompts."""
    skipped = total = 0
    for k, prompt in enumerate(prompts):
        pipe.generate(prompt, seed=k, cache=cache, **gen)
        skipped += pipe.last_cache.passes_skipped
        total += pipe.last_cache.passes_skipped + pipe.last_cache.passes_computed
    return skipped / max(total, 1)


def calibrate(
    pipe: Any,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    *,
    target_skip: float = 0.5,
    num_steps: int | None = None,
) -> dict[str, Any]:
    """-> the calibration record (also installed as ``pipe.cache_calibration``)."""
    p = pipe.preset
    steps = num_steps or p.default_num_steps
    gen = dict(num_steps=steps, shift=p.default_shift, sampler=p.default_sampler)
    rec = Recorder()
    for k, prompt in enumerate(prompts):
        pipe.generate(prompt, seed=k, cache=rec, **gen)
    xs, ys = np.array([t[0] for t in rec.tea]), np.array([t[1] for t in rec.tea])
    with warnings.catch_warnings():
        # few prompts on a tiny model give a rank-deficient fit; the least-squares answer is still
        # the best polynomial the samples support, and the threshold search below judges it
        warnings.simplefilter("ignore", np.exceptions.RankWarning)
        coefficients = np.polyfit(xs, ys, 4).tolist()
    n = len(prompts)
    ratios = {b: [v[s] / n for s in sorted(v)] for b, v in rec.mag.items()}
    record: dict[str, Any] = {
        "model_id": p.model_id,
        "num_steps": steps,
        "shift": p.default_shift,
        "sampler": p.default_sampler,
        "prompts": list(prompts),
        "target_skip": target_skip,
        "teacache": {"input": "e0", "coefficients": coefficients},
        "magcache": {"ratios": ratios, "retention": 0.2},
        "first_block": {"warmup": FIRST_BLOCK_WARMUP},
        "easycache": {"warmup": EASYCACHE_WARMUP},
    }
    for kind in CACHE_TYPES:
        record[kind]["threshold"] = THRESHOLD_GRID[kind][-1]  # provisional, so that the type resolves
    pipe.cache_calibration = record
    num_layers = len(pipe.transformer.blocks)
    for kind in CACHE_TYPES:
        # first_block always runs block 0, so it must skip more passes for the same saving
        target = min(0.9, target_skip / (1 - 1 / num_layers)) if kind == "first_block" else target_skip
        seen: list[tuple[float, float]] = []
        for thr in THRESHOLD_GRID[kind]:
            frac = _skip_fraction(pipe, prompts, {"type": kind, "threshold": thr}, gen)
            seen.append((thr, frac))
            if frac >= target:
                break
        else:
            # the warm-up and the skip cap bound the skips below the target: take where the plateau
            # starts, since a higher threshold skips no more and only lets staler residuals through
            top = max(f for _, f in seen)
            seen = [next((t, f) for t, f in seen if f >= top - PLATEAU)]
        thr, frac = seen[-1]
        record[kind].update(threshold=thr, skip_fraction=round(frac, 4))
    return record


def write_calibration(record: dict[str, Any], folder: Path) -> Path:
    path = folder / CALIBRATION_FILE
    path.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.cache_calibrate", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint folder or built-in preset (wanserve-demo)")
    ap.add_argument("--out", type=Path, default=None, help="folder to write to (default: the weights)")
    ap.add_argument("--prompt", action="append", default=None, help="calibration prompt (repeatable)")
    ap.add_argument("--target-skip", type=float, default=0.5, help="skipped share of the block work")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    args = ap.parse_args(argv)
    from model.loading import checkpoint_dir, load_pipeline

    folder = args.out or checkpoint_dir(args.model)
    if folder is None:
        raise SystemExit(f"{args.model!r} has no weights folder; pass --out")
    torch.manual_seed(0)
    pipe = load_pipeline(args.model)
    record = calibrate(
        pipe, args.prompt or DEFAULT_PROMPTS, target_skip=args.target_skip, num_steps=args.steps
    )
    path = write_calibration(record, folder)
    thr = {k: record[k]["threshold"] for k in CACHE_TYPES}
    print(f"wrote {path.resolve()}: thresholds {thr}")  # noqa: T201  (a command-line tool's report)
    return 0 if all(math.isfinite(v) for v in thr.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
