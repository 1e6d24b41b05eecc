"""This worker's leases on its running jobs (`app.core.leases` holds the Redis side).

The ``wan.generate`` task holds a lease on its job for as long as it runs (`job_lease`); a
`LeaseKeeper` renews it every ``heartbeat_interval_s`` for ``job_lease_ttl_s`` (a loop of
`app.core.background`). If the lease is taken away (the reaper decided this worker was dead, or
the SIGTERM grace period ran out) the job is abandoned at the next denoising step (`LeaseLost`),
without touching its status: whoever claimed the lease has settled it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis

from app.core.background import Loop, every
from app.core.config import Settings
from app.core.errors import JobError
from app.core.leases import Leases

log = logging.getLogger(__name__)


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
