"""Device memory of a worker: freed after every job; out-of-memory failures named and survived.

- `free_device_memory()`: ``torch.cuda.empty_cache()`` after every job, and a full
  ``gc.collect()`` after every job that did not complete (failed, cancelled, timed out, out of memory).
- `is_oom(exc)` / `oom_message(...)`: the job fails as ``out_of_memory`` with the size it asked
  for, and the worker keeps serving.
- `maybe_simulate_oom(...)`: the ``debug_oom_marker`` testing aid (off by default) raises
  ``torch.OutOfMemoryError`` inside the pipeline's step callback of a job whose prompt contains it.
"""

from __future__ import annotations

import gc
from typing import Any

from app.core import keys

SIMULATED_OOM_STEP = 2


def free_device_memory(device: str, collect: bool = True) -> None:
    if collect:
        gc.collect()
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError | MemoryError) and "out of memory" in str(exc).lower()


def oom_message(rec: Any, device: str) -> str:
    p = rec.params
    return (
        f"the device ({device}) ran out of memory generating {p.width}x{p.height}, "
        f"{p.num_frames} frames, {p.num_inference_steps} steps; try a smaller size or fewer frames "
        "(the worker cleared its caches and keeps serving)"
    )


def maybe_simulate_oom(rt: Any, job_id: str, step: int) -> None:
    """Testing aid (``debug_oom_marker``, off by default): raise an OOM inside the pipeline."""
    marker = rt.settings.debug_oom_marker
    if not marker or step != SIMULATED_OOM_STEP:
        return
    prompt = rt.redis.hget(keys.job(job_id), "prompt") or ""
    if marker in str(prompt):
        import torch

        raise torch.OutOfMemoryError(f"CUDA out of memory (simulated by debug_oom_marker at step {step})")
