"""Every loop that runs beside the requests and jobs is started here.

Gateway (asyncio tasks, started and stopped by the lifespan): `start_gateway_loops`

- the reaper (`app.core.reaper.reaper`): requeues or fails jobs whose worker died, cancels queued
  jobs past their deadline, and (housekeeping) recovers queued jobs that never reached the broker
  and prunes the job indexes;
- the asset retention sweeper (`app.core.retention.sweeper`): deletes the files of expired jobs.

Worker processes (daemon threads): `every(interval_s, fn, name=)`

- the heartbeat of a GPU worker (`worker.runtime`) and of an extension worker (`worker.extend_worker`);
- the renewal of the leases of running jobs (`worker.leases.LeaseKeeper`).

A round that fails (Redis away for a while) is logged and the loop goes on: the TTLs of
heartbeats and leases tell the other processes what a silent one means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

import redis.asyncio as aredis

from app.core import retention
from app.core.config import Settings
from app.core.jobstore_async import AsyncJobStore
from app.core.reaper import Housekeeping, reaper
from app.core.redisconn import async_broker_client
from app.core.storage import Storage

log = logging.getLogger(__name__)


def start_gateway_loops(
    settings: Settings,
    r: aredis.Redis,
    store: AsyncJobStore,
    storage: Storage,
    *,
    enqueue: Callable[..., Awaitable[None]],
) -> list[asyncio.Task[None]]:
    """The reaper and the retention sweeper of one gateway; stop them with `stop_gateway_loops`."""
    s = settings
    housekeeping = Housekeeping(
        broker=r if s.broker == s.redis_url else async_broker_client(s),
        queued_recover_s=s.queued_recover_s,
        retention_s=s.retention_s,
    )
    reap = reaper(
        r,
        store,
        interval_s=s.reaper_interval_s,
        max_attempts=s.max_attempts,
        enqueue=enqueue,
        housekeeping=housekeeping,
    )
    sweep = retention.sweeper(r, storage, s.retention_sweep_interval_s)
    return [
        asyncio.create_task(reap, name="wanserve-reaper"),
        asyncio.create_task(sweep, name="wanserve-retention"),
    ]


async def stop_gateway_loops(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Loop:
    """A daemon thread calling ``fn`` every ``interval_s`` until `stop`."""

    def __init__(self, interval_s: float, fn: Callable[[], None], *, name: str) -> None:
        self.interval_s, self.fn, self.name = interval_s, fn, name
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.fn()
            except Exception as exc:
                log.warning("%s failed: %r", self.name, exc)

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=timeout_s)


def every(interval_s: float, fn: Callable[[], None], *, name: str) -> Loop:
    """Start calling ``fn`` every ``interval_s`` seconds in a daemon thread."""
    loop = Loop(interval_s, fn, name=name)
    loop.thread.start()
    return loop
