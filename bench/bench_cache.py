"""Step caching on the demo model: denoising time, fidelity and prompt-following per type and threshold.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_cache.py [--overhead-only] [--extra TYPE:THR ...] [--no-grid]

1. `wanserve-demo` at its defaults (20 steps, unipc, shift 2, guidance 6), the fixed 24-clip text
   test set of `training.demo.evaluate`: for each type at 3 thresholds (half, 1x and 1.5x the
   calibrated default), the DiT time summed over all steps of all clips (the denoising time: the
   sampler update itself is microseconds) as a ratio to no cache, each clip timed back to back with
   its uncached run (``--repeats`` times, fastest kept), PSNR / SSIM of each video against the
   uncached one at the same seed, and how many clips follow the prompt (colour and direction).
   ``--extra TYPE:THRESHOLD[:WARMUP[:MAX_SKIPS]]`` adds rows (WARMUP: the leading share of steps
   that always runs; MAX_SKIPS: the cap on skips in a row; both default to the model's calibrated
   values); ``--no-grid`` leaves out the 3-point grid (a finer sweep of chosen points).
2. The decision overhead on a mid-size random DiT (dim 1024, 8 blocks, 2x1024 tokens): time spent
   deciding (signals, norms, bookkeeping) per step over the full step time.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model import load_pipeline
from model.cache import CACHE_TYPES, StepCache, resolve_cache
from model.transformer import TransformerConfig, WanTransformer
from training.demo import evaluate as E
from training.demo.world import simple_caption


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM of two videos [3, F, H, W] in [-1, 1] (7x7 box window, per frame and channel)."""
    x = ((a + 1) / 2).permute(1, 0, 2, 3).double()  # [F, 3, H, W] in [0, 1]
    y = ((b + 1) / 2).permute(1, 0, 2, 3).double()
    c1, c2 = 0.01**2, 0.03**2

    def pool(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, 7, stride=1)

    mx, my = pool(x), pool(y)
    vx, vy, cxy = pool(x * x) - mx * mx, pool(y * y) - my * my, pool(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


class DitTimer:
    """Sums the wall time of every transformer call (wraps the expert's forward on the instance)."""

    def __init__(self, pipe: Any) -> None:
        self.seconds = 0.0
        for dit in pipe.experts:
            stock = dit.forward

            def timed(*args: Any, _stock: Any = stock, **kw: Any) -> Any:
                t0 = time.thread_time()
                out = _stock(*args, **kw)
                self.seconds += time.thread_time() - t0
                return out

            dit.forward = timed


def _timed(pipe: Any, timer: DitTimer, prompt: str, seed: int, cache: Any) -> tuple[float, Any, int]:
    """-> (DiT seconds, video, branch passes skipped)."""
    timer.seconds = 0.0
    video = pipe.generate(prompt, seed=seed, cache=cache)
    return timer.seconds, video, 0 if pipe.last_cache is None else pipe.last_cache.passes_skipped


def run_set(
    pipe: Any, timer: DitTimer, cache: dict[str, Any] | None, repeats: int = 1
) -> tuple[float, float, list[Any], int, int]:
    """-> (cached DiT seconds, uncached DiT seconds, videos, clips following the prompt, passes
    skipped). Each clip runs uncached and cached back to back (alternating which goes first),
    ``repeats`` times, and each keeps its fastest run: on a shared machine the load drifts over
    seconds, so a ratio of neighbours is steady where two separate passes over the set are not."""
    videos, ok, skipped, t_cached, t_plain = [], 0, 0, 0.0, 0.0
    for k, (color, shape, direction, background, seed) in enumerate(E.text_cases()):
        prompt = simple_caption(color, shape, direction, background)
        best_c = best_p = float("inf")
        for r in range(repeats):
            order = (None,) if cache is None else (cache, None) if (k + r) % 2 else (None, cache)
            for c in order:
                secs, video, skips = _timed(pipe, timer, prompt, seed, c)
                if c is None:
                    best_p = min(best_p, secs)
                else:
                    best_c, kept, n_skipped = min(best_c, secs), video, skips
        if cache is None:
            best_c, kept, n_skipped = best_p, video, 0
        skipped += n_skipped
        t_cached, t_plain = t_cached + best_c, t_plain + best_p
        videos.append(kept)
        follows = E.score_clip(kept, prompt, color, direction).ok
        ok += follows
        if not follows:
            print(f"    clip {k} ({prompt!r}, seed {seed}) does not follow", file=sys.stderr)
    return t_cached, t_plain, videos, ok, skipped


def demo_table(
    extra: list[tuple[str, float, float | None, int | None]], grid: bool = True, repeats: int = 2
) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steadier timings on a shared machine
    pipe = load_pipeline("wanserve-demo")
    timer = DitTimer(pipe)
    _, t_ref, ref, ok_ref, _ = run_set(pipe, timer, None)  # also the warm-up
    rows = []
    points: list[tuple[str, float, float | None, int | None, bool]] = []
    calibration: dict[str, Any] = pipe.cache_calibration or {}
    for kind in CACHE_TYPES if grid else ():
        default = resolve_cache({"type": kind}, pipe.preset.model_id, calibration)
        assert default is not None
        points += [(kind, round(default.threshold * m, 4), None, None, m == 1.0) for m in (0.5, 1.0, 1.5)]
    for kind, thr, warmup, cap in extra:
        default = resolve_cache({"type": kind}, pipe.preset.model_id, calibration)
        assert default is not None
        same = (
            thr == default.threshold and warmup in (None, default.warmup) and cap in (None, default.max_skips)
        )
        points.append((kind, thr, warmup, cap, same))
    for kind, thr, warmup, cap, is_default in points:
        if warmup is not None:  # another warm-up than the calibrated one, for this row only
            pipe.cache_calibration = {**calibration, kind: {**calibration.get(kind, {}), "warmup": warmup}}
        request: dict[str, Any] = {"type": kind, "threshold": thr}
        if cap is not None:
            request["max_skips"] = cap
        spec = resolve_cache(request, pipe.preset.model_id, pipe.cache_calibration)
        assert spec is not None
        warmup, cap = spec.warmup, spec.max_skips
        secs, plain, videos, ok, skipped = run_set(pipe, timer, request, repeats)
        pipe.cache_calibration = calibration
        psnrs = [E.psnr(v, r) for v, r in zip(videos, ref, strict=True)]
        ssims = [ssim(v, r) for v, r in zip(videos, ref, strict=True)]
        fid = float(np.mean(psnrs)), float(np.mean(ssims))
        rows.append((kind, thr, warmup, cap, is_default, secs / plain, skipped, *fid, ok))
        print(
            f"  {kind} {thr} warm-up {warmup} cap {cap}: {secs:.3f} s / uncached {plain:.3f} s = "
            f"{secs / plain:.2f}x, "
            f"{skipped} skipped, PSNR {fid[0]:.1f}, {ok}/24",
            file=sys.stderr,
            flush=True,
        )
    passes = len(ref) * pipe.preset.default_num_steps * 2
    print(f"uncached: DiT time {t_ref:.3f} s, prompt-following {ok_ref}/24")
    head = (
        "| type | threshold | warm-up | skip cap | default | time ratio | passes skipped | PSNR dB | SSIM |"
    )
    print(head + " prompt-following |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind, thr, warmup, cap, is_default, ratio, skipped, p, s, ok in rows:
        print(
            f"| {kind} | {thr} | {warmup:g} | {cap} | {'yes' if is_default else ''} | {ratio:.2f}x | "
            f"{skipped}/{passes} | {p:.1f} | {s:.3f} | {ok}/24 |"
        )


def overhead() -> None:
    torch.manual_seed(0)
    cfg = TransformerConfig(
        model_type="t2v", patch_size=(1, 2, 2), text_len=64, in_dim=16, dim=1024, ffn_dim=4096,
        freq_dim=256, text_dim=64, out_dim=16, num_heads=8, num_layers=8, eps=1e-6,
        cross_attn_norm=True, qk_norm=True,
    )  # fmt: skip
    dit = WanTransformer(cfg).eval()
    x = torch.randn(2, 16, 4, 32, 32)  # 4 * 16 * 16 = 1024 tokens per sample
    ctx = torch.randn(2, 64, 64)
    cal = {
        "teacache": {"coefficients": [1.0, 0.0], "threshold": 0.3},
        "magcache": {"ratios": {"cond": [1.0] * 8, "uncond": [1.0] * 8}, "threshold": 0.3},
    }
    with torch.inference_mode():
        plain = []
        for i in range(4):  # the uncached step: what the decision is compared with
            t0 = time.thread_time()
            dit(x + 0.1 * i, torch.tensor([900.0 - 100 * i] * 2), ctx)
            plain.append(time.thread_time() - t0)
        step = float(np.median(plain[1:]))
        for kind in CACHE_TYPES:
            spec = resolve_cache({"type": kind, "threshold": 0.3}, "mid", cal)
            assert spec is not None
            cache = StepCache(spec, 6)
            for i in range(6):  # a moving input, so that every rule has something to measure
                cache.begin_step(i, 0, ("cond", "uncond"))
                dit(x + 0.1 * i, torch.tensor([900.0 - 100 * i] * 2), ctx, cache=cache)
            per_step = cache.decision_seconds / 6
            ms = f"{per_step * 1e3:.3f} ms per step, uncached step {step * 1e3:.0f} ms"
            print(f"{kind}: decision {ms} -> {per_step / step:.3%}")


def _point(text: str) -> tuple[str, float, float | None, int | None]:
    """TYPE:THRESHOLD[:WARMUP[:MAX_SKIPS]] -> (type, threshold, warm-up share, skip cap); None for
    the calibrated value."""
    kind, thr, *rest = text.split(":")
    warmup = float(rest[0]) if rest and rest[0] else None
    return kind, float(thr), warmup, int(rest[1]) if len(rest) > 1 else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--overhead-only", action="store_true")
    ap.add_argument(
        "--extra", action="append", default=[], metavar="TYPE:THR[:WARMUP[:CAP]]", help="more rows"
    )
    ap.add_argument("--no-grid", action="store_true", help="only the --extra rows (a finer sweep)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per clip and setting (fastest kept)")
    args = ap.parse_args()
    if not args.overhead_only:
        extra = [_point(e) for e in args.extra]
        demo_table(extra, grid=not args.no_grid, repeats=args.repeats)
    overhead()


if __name__ == "__main__":
    main()
