"""Step caching on the demo model: denoising time, fidelity and prompt-following per type and threshold.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_cache.py [--overhead-only] [--extra TYPE:THR ...]

1. `wanserve-demo` at its defaults (20 steps, unipc, shift 2, guidance 3), the fixed 24-clip text
   test set of `training.demo.evaluate`: for no cache and each type at 3 thresholds (half, 1x and 1.5x
   the calibrated default), the DiT time summed over all steps of all clips (the denoising time:
   the sampler update itself is microseconds) as a ratio to no cache (the uncached reference is run
   before and after and averaged), PSNR / SSIM of each video against the uncached one at the same
   seed, and how many clips follow the prompt (colour and direction). ``--extra TYPE:THRESHOLD``
   adds rows.
2. The decision overhead on a mid-size random DiT (dim 1024, 8 blocks, 2x1024 tokens): time spent
   deciding (signals, norms, bookkeeping) per step over the full step time.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model import load_pipeline
from model.cache import CACHE_TYPES, StepCache, resolve_cache
from model.demo import evaluate as E
from model.transformer import TransformerConfig, WanTransformer
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


def run_set(pipe: Any, timer: DitTimer, cache: dict[str, Any] | None) -> tuple[float, list[Any], int, int]:
    timer.seconds = 0.0
    videos, ok, skipped = [], 0, 0
    for color, shape, direction, background, seed in E.text_cases():
        prompt = simple_caption(color, shape, direction, background)
        video = pipe.generate(prompt, seed=seed, cache=cache)
        videos.append(video)
        ok += E.score_clip(video, prompt, color, direction).ok
        if pipe.last_cache is not None:
            skipped += pipe.last_cache.passes_skipped
    return timer.seconds, videos, ok, skipped


def demo_table(extra: list[tuple[str, float]]) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steadier timings on a shared machine
    pipe = load_pipeline("wanserve-demo")
    timer = DitTimer(pipe)
    run_set(pipe, timer, None)  # warm-up
    t_a, ref, ok_ref, _ = run_set(pipe, timer, None)
    rows = []
    points: list[tuple[str, float, bool]] = []
    for kind in CACHE_TYPES:
        default = resolve_cache({"type": kind}, pipe.preset.model_id, pipe.cache_calibration)
        assert default is not None
        points += [(kind, round(default.threshold * m, 4), m == 1.0) for m in (0.5, 1.0, 1.5)]
    points += [(kind, thr, False) for kind, thr in extra]
    for kind, thr, is_default in points:
        secs, videos, ok, skipped = run_set(pipe, timer, {"type": kind, "threshold": thr})
        psnrs = [E.psnr(v, r) for v, r in zip(videos, ref, strict=True)]
        ssims = [ssim(v, r) for v, r in zip(videos, ref, strict=True)]
        fid = float(np.mean(psnrs)), float(np.mean(ssims))
        rows.append((kind, thr, is_default, secs, skipped, *fid, ok))
    t_b, _, _, _ = run_set(pipe, timer, None)
    t_ref = (t_a + t_b) / 2
    passes = len(ref) * pipe.preset.default_num_steps * 2
    print(f"uncached: DiT time {t_ref:.3f} s (runs {t_a:.3f} / {t_b:.3f}), prompt-following {ok_ref}/24")
    print("| type | threshold | default | time ratio | passes skipped | PSNR dB | SSIM | prompt-following |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, thr, is_default, secs, skipped, p, s, ok in rows:
        print(
            f"| {kind} | {thr} | {'yes' if is_default else ''} | {secs / t_ref:.2f}x | "
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--overhead-only", action="store_true")
    ap.add_argument("--extra", action="append", default=[], metavar="TYPE:THRESHOLD", help="more rows")
    args = ap.parse_args()
    if not args.overhead_only:
        extra = [(e.split(":")[0], float(e.split(":")[1])) for e in args.extra]
        demo_table(extra)
    overhead()


if __name__ == "__main__":
    main()
