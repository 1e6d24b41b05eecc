"""A tiny `JobRecord` for tests that drive the job store or the worker logic without the API."""

from __future__ import annotations

import time
from typing import Any

from app.core.schemas import JobRecord, ResolvedParams
from app.core.status import JobStatus


def tiny_params(**overrides: Any) -> ResolvedParams:
    """32x32, 5 frames, 2 steps; keyword arguments replace fields."""
    fields: dict[str, Any] = {
        "width": 32,
        "height": 32,
        "num_frames": 5,
        "fps": 16,
        "num_inference_steps": 2,
        "guidance_scale": [5.0],
        "shift": 5.0,
        "sampler": "unipc",
        "seed": 1,
    }
    return ResolvedParams(**(fields | overrides))


def tiny_record(**overrides: Any) -> JobRecord:
    """A queued job with `tiny_params` and a fresh id; keyword arguments replace fields."""
    fields: dict[str, Any] = {
        "id": f"video_t{time.monotonic_ns()}",
        "status": JobStatus.QUEUED,
        "model": "tiny-ti2v",
        "prompt": "p",
        "params": tiny_params(),
        "created_at": time.time(),
    }
    return JobRecord(**(fields | overrides))
