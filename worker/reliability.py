"""Worker-side reliability: job leases, SIGTERM grace, device-memory hygiene, OOM handling.

- `job_lease(rt, job_id)`: the Celery task holds a lease on its job (`app.core.leases`) for as
  long as it runs; a `LeaseKeeper` thread renews it every ``heartbeat_interval_s`` for
  ``job_lease_ttl_s``. If the lease is taken away (the reaper decided this worker was dead, or the
  SIGTERM grace period ran out) the job is abandoned at the next denoising step (`LeaseLost`),
  without touching its status: whoever claimed the lease has requeued it.
- `install_shutdown_grace(...)`: on SIGTERM (Celery warm shutdown: no new job is taken) the
  current job may finish for ``shutdown_grace_s``; then its lease is claimed, the job is requeued
  (not counted as a lost attempt) and the child abandons it at its next step (or is killed after
  a few more seconds), so the worker exits cleanly within the grace period plus one step.
- `free_device_memory()`: ``torch.cuda.empty_cache()`` after every job, and a full
  ``gc.collect()`` after every job that did not complete (failed, cancelled, timed out, out of memory).
- `is_oom(exc)` / `oom_message(...)`; `maybe_simulate_oom(...)`: the ``debug_oom_marker`` testing
  aid (off by default) raises ``torch.OutOfMemoryError`` inside the pipeline's step callback of a
  job whose prompt contains the marker.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from app.core import keys
from app.core.background import Loop, every
from app.core.config import Settings
from app.core.errors import JobError
from app.core.leases import Leases

log = logging.getLogger(__name__)
SIMULATED_OOM_STEP = 2


class LeaseLost(JobError):
    """The job's lease was claimed by someone else (reaper, shutdown grace): stop, write nothing."""

    code = "worker_lost"


class LeaseKeeper:
    """Holds and renews this process's job leases from a daemon thread."""

    def __init__(self, r: redis.Redis, worker_id: str, *, ttl_s: float, interval_s: float) -> None:
        self.leases = Leases(r)
        self.worker_id = worker_id
        self.ttl_s, self.interval_s = ttl_s, interval_s
        self.held: set[str] = set()
        self.lost: set[str] = set()
        self._lock = threading.Lock()
        self._renewing: Loop | None = None

    def acquire(self, job_id: str) -> None:
        self.leases.acquire(job_id, self.worker_id, time.time() + self.ttl_s)
        with self._lock:
            self.held.add(job_id)
            self.lost.discard(job_id)
        if self._renewing is None or not self._renewing.alive():
            self._renewing = every(self.interval_s, self.renew, name="wanserve-lease")

    def release(self, job_id: str) -> None:
        with self._lock:
            self.held.discard(job_id)
            self.lost.discard(job_id)
        try:
            self.leases.release(job_id, self.worker_id)
        except Exception as exc:  # the lease then expires; the reaper finds the job finished
            log.warning("could not release the lease of %s: %r", job_id, exc)

    def is_lost(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self.lost

    def renew(self) -> None:
        with self._lock:
            held = list(self.held)
        for job_id in held:
            if not self.leases.refresh(job_id, self.worker_id, time.time() + self.ttl_s):
                log.warning(
                    "lease of %s was claimed by another; abandoning it", job_id, extra={"job_id": job_id}
                )
                with self._lock:
                    self.held.discard(job_id)
                    self.lost.add(job_id)


_keeper: LeaseKeeper | None = None


def keeper(r: redis.Redis, settings: Settings, worker_id: str) -> LeaseKeeper:
    global _keeper
    if _keeper is None or _keeper.worker_id != worker_id:
        _keeper = LeaseKeeper(
            r, worker_id, ttl_s=settings.job_lease_ttl_s, interval_s=settings.heartbeat_interval_s
        )
    return _keeper


def lease_lost(job_id: str) -> bool:
    return _keeper is not None and _keeper.is_lost(job_id)


@contextlib.contextmanager
def job_lease(rt: Any, job_id: str) -> Iterator[None]:
    """Hold a lease on ``job_id`` while the body runs (``rt``: the `WorkerRuntime`)."""
    k = keeper(rt.redis, rt.settings, rt.worker_id)
    k.acquire(job_id)
    try:
        yield
    finally:
        k.release(job_id)


# --- device memory and out-of-memory ------------------------------------------------------------


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


# --- SIGTERM: finish or requeue within the grace period ----------------------------------------


def install_shutdown_grace(
    settings: Settings, r_factory: Callable[[], redis.Redis], requeue: Callable[[str, str], None]
) -> None:
    """Connect to Celery's ``worker_shutting_down`` (parent process; warm shutdown takes no new job)."""
    from celery import signals

    started = threading.Event()

    def on_shutdown(**_: Any) -> None:
        if started.is_set():
            return
        started.set()
        threading.Thread(
            target=_grace, args=(settings, r_factory, requeue), name="wanserve-grace", daemon=True
        ).start()

    signals.worker_shutting_down.connect(on_shutdown, weak=False)


def _grace(
    settings: Settings, r_factory: Callable[[], redis.Redis], requeue: Callable[[str, str], None]
) -> None:
    worker_id = settings.resolved_worker_id()
    r = r_factory()
    leases = Leases(r)
    log.info("SIGTERM: taking no new job; the current one may run %.1fs more", settings.shutdown_grace_s)
    deadline = time.monotonic() + settings.shutdown_grace_s
    while time.monotonic() < deadline:
        try:
            if not leases.owned_by(worker_id):
                return  # idle, or the job finished in time: Celery exits by itself
        except Exception as exc:
            log.warning("shutdown grace: %r", exc)
        time.sleep(0.1)
    requeued = []
    for job_id in leases.owned_by(worker_id):
        claim = leases.claim(job_id, time.time(), expired=False, owner=worker_id, graceful=True)
        if claim is not None and claim.pending:
            requeue(job_id, settings.model)
            requeued.append(job_id)
            log.warning("shutdown grace over: requeued %s", job_id, extra={"job_id": job_id})
    if not requeued:
        return
    # the child abandons the job at its next step; a step that never ends is cut short
    time.sleep(max(5.0, 4 * settings.heartbeat_interval_s))
    pid, current = r.hmget(keys.worker(worker_id), ["pid", "current_job"])
    if pid and current in requeued and int(pid) != os.getpid():
        log.warning("shutdown grace: the job did not stop; killing the pool process %s", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
