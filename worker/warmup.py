"""The worker's warm-up: short generations before it reports ``ready``, so that nobody's first
video pays the process's first-call costs (measured in bench/cold_start.py, bench/RESULTS.md).

What a first call costs, and why the warm-up runs the request most users send (the default size
and frame count, each text/image mode the model serves) rather than the smallest one: the thread
pools start on the first parallel op whatever the shape, but the RoPE tables, the CPU allocator's
adaptive thresholds (glibc raises its mmap threshold after the first large frees, so later jobs
stop paying page faults for fresh mappings) and the accelerator's per-shape kernel choices are all
per shape. Two steps, so that the multistep solver's second-order path and classifier-free
guidance run too. Compiled workers warm every served size (each new shape is a compile).
"""

from __future__ import annotations

import time
from typing import Any

from app.core.config import Settings

WARMUP_STEPS = 2


def warmup_buckets(preset: Any, compiled: bool) -> list[tuple[int, int, int, bool]]:
    """(width, height, frames, with_image) to warm: the default size eagerly, every size compiled;
    at the default frame count, in each mode (text, image) the model serves."""
    p = preset
    modes = {"none": [False], "required": [True], "optional": [False, True]}[p.image_input]
    sizes = list(p.sizes) if compiled else [tuple(p.default_size)]
    return [(w, h, p.default_num_frames, m) for (w, h) in sizes for m in modes]


def warm_up(pipe: Any, settings: Settings) -> float:
    """Run the warm-up generations on a loaded pipeline; returns the seconds it took."""
    t0 = time.perf_counter()
    for w, h, frames, with_image in warmup_buckets(pipe.preset, settings.compile):
        image = None
        if with_image:
            from PIL import Image

            image = Image.new("RGB", (w, h), (128, 128, 128))
        steps = 1 if settings.compile else WARMUP_STEPS  # compiled: one step compiles the block
        pipe.generate("warm-up", image=image, height=h, width=w, num_frames=frames, num_steps=steps)
    return time.perf_counter() - t0
