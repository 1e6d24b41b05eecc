"""Worker-side observability: log context per job, memory figures for the admin view."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import redis

from app.core import keys
from app.core.logjson import job_id_var, request_id_var


@contextlib.contextmanager
def job_context(job_id: str, request_id: str | None = None) -> Iterator[None]:
    """Every log line of the job carries its ``job_id`` and the submitting request's id."""
    token = job_id_var.set(job_id)
    rtoken = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(rtoken)
        job_id_var.reset(token)


def submitted_request_id(r: redis.Redis, job_id: str) -> str | None:
    """The ``X-Request-ID`` the job was submitted with (stored JSON-encoded in the record)."""
    try:
        raw = r.hget(keys.job(job_id), "request_id")
        value = json.loads(raw) if isinstance(raw, str) else None
    except Exception:  # logging context only: never fail a job for it
        return None
    return value if isinstance(value, str) else None


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def memory_stats(device: str) -> dict[str, str]:
    """Heartbeat extras: resident memory and, on CUDA, allocated / reserved device memory."""
    out = {"rss_bytes": str(rss_bytes())}
    if device.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                out["device_allocated_bytes"] = str(torch.cuda.memory_allocated(device))
                out["device_reserved_bytes"] = str(torch.cuda.memory_reserved(device))
        except Exception:  # noqa: S110 - figures are best effort
            pass
    return out
