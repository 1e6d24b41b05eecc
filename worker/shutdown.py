"""SIGTERM: a worker finishes or requeues its job within the grace period, then exits.

`install_shutdown_grace(...)` connects to Celery's ``worker_shutting_down`` in the parent process
(warm shutdown: no new job is taken). The current job may finish for ``shutdown_grace_s``; then its
lease is claimed, the job is requeued (not counted as a lost attempt) and the child abandons it at
its next step (or is killed after a few more seconds), so the worker exits cleanly within the
grace period plus one step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from app.core import keys
from app.core.config import Settings
from app.core.leases import Leases

log = logging.getLogger(__name__)


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
