"""Per-step cost of live previews on the `wanserve-demo` model (CPU).

    .venv/bin/python bench/bench_preview.py                   # CPU, 2 threads, 5 alternating rounds
    python3 bench/bench_preview.py --device cuda              # on the GPU machine (no redis/pydantic needed)

Times the same generation (preset size and frames, `--steps` steps, fixed seed) without a preview
hook, with the worker's hook at the default throttle (`preview_every_s` 1.0) and with
`preview_every_s` 0 (as often as the hook's own 2 % budget allows, `worker.preview.MAX_SHARE`: the
worst case), alternating the three in each round, and reports
the median per-step time, the overhead against no previews, the cost of one preview (x0,
projection, upsampling, WebP strip, base64) and the share of each run's wall time spent inside the
hook (measured within the run, so it holds on a loaded machine where run-to-run noise swamps a
difference of a few percent). The hook publishes to an in-memory stand-in for Redis:
the publish itself is one small script call, like the progress event every step already makes.

Then the cost of one preview at the TI2V-5B 720p latent size (48 x 31 x 44 x 80, published Wan2.2
factors), where the step itself takes seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import load_pipeline  # noqa: E402
from model.preview import LatentRGB  # noqa: E402
from worker.preview import PreviewHook  # noqa: E402


class MemoryPublisher:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def publish(self, job_id: str, data: dict[str, Any], fence: Any = False) -> int:
        self.sizes.append(len(data["image"]))
        return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline("wanserve-demo", device=args.device)
    modes = {"off": None, "default (1.0 s)": 1.0, "every_s 0": 0.0}
    times: dict[str, list[float]] = {m: [] for m in modes}
    costs: dict[str, list[float]] = {m: [] for m in modes}
    shares: dict[str, list[float]] = {m: [] for m in modes}  # hook time / wall time of the same run
    pub = MemoryPublisher()

    def run(every_s: float | None) -> tuple[float, float, float]:
        hook = None
        if every_s is not None:
            hook = PreviewHook(_settings(every_s), pub, "video_bench", pipe.latent_rgb)  # type: ignore[arg-type]
        _sync(args.device)
        t0 = time.perf_counter()
        pipe.generate("a red circle moves slowly to the left", num_steps=args.steps, seed=1, preview=hook)
        _sync(args.device)
        wall = time.perf_counter() - t0
        if hook is None or not hook.published:
            return wall, 0.0, 0.0
        return wall, hook.spent_s / hook.published, hook.spent_s / wall

    run(None)  # warm-up
    for _ in range(args.rounds):
        for name, every in modes.items():
            wall, per_preview, share = run(every)
            times[name].append(wall / args.steps)
            if per_preview:
                costs[name].append(per_preview)
                shares[name].append(share)
    base = statistics.median(times["off"])
    where = args.device if args.device != "cpu" else f"cpu, {torch.get_num_threads()} threads"
    print(f"wanserve-demo, {args.steps} steps, {where}, {args.rounds} rounds (median)")
    for name in modes:
        med = statistics.median(times[name])
        cost = ""
        if costs[name]:
            cost = (
                f", {1000 * statistics.median(costs[name]):.2f} ms per preview,"
                f" {100 * statistics.median(shares[name]):.2f}% of the run inside the hook"
            )
        print(f"  previews {name:16s}: {1000 * med:7.2f} ms/step ({100 * (med / base - 1):+.1f}%){cost}")
    if pub.sizes:
        print(f"  preview data URL: median {statistics.median(pub.sizes)} bytes, max {max(pub.sizes)}")
    big_ms = 1000 * _big_preview_s(args.device)
    print(f"  one preview at the TI2V-5B 720p latent size: {big_ms:.2f} ms (median of 20)")
    return 0


def _settings(every_s: float) -> Any:
    """The preview settings the hook reads (the defaults of `app.core.config.Settings`)."""
    return SimpleNamespace(
        preview_every_s=every_s, preview_every_steps=1, preview_max_side=128, preview_frames=4,
        preview_max_bytes=48_000,
    )  # fmt: skip


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _big_preview_s(device: str) -> float:
    import json

    table = json.loads((Path(__file__).resolve().parents[1] / "model" / "preview_factors.json").read_text())
    factors = LatentRGB.from_json(table["wan2.2"])
    latent = torch.randn(1, 48, 31, 44, 80, device=device)
    times = []
    for step in range(1, 22):
        # a fresh hook each time: one hook would space its previews by its 2 % budget
        hook = PreviewHook(_settings(0.0), MemoryPublisher(), "video_bench", factors)  # type: ignore[arg-type]
        _sync(device)
        t0 = time.perf_counter()
        hook(step, 100, lambda: latent * 0.5)
        _sync(device)
        if step > 1:  # the first call warms up the kernels
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


if __name__ == "__main__":
    raise SystemExit(main())
