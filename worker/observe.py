"""Worker-side observability: log context per job, memory figures for the admin view, metrics hook."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from app.core import metrics
from app.core.jobstore import JobStore
from app.core.logjson import job_id_var


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Every log line of the job carries its ``job_id``."""
    token = job_id_var.set(job_id)
    try:
        yield
    finally:
        job_id_var.reset(token)


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


def install_worker_metrics(store: JobStore) -> None:
    store.add_transition_hook(metrics.sync_hook(store.r))
