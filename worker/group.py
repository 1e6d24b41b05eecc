"""`wanserve worker --devices D0,D1,...`: one worker group, one job on several processes.

The supervisor (this module, no torch) starts one process per device (`worker.group_rank`), all
on this machine, joined in one ``torch.distributed`` world (gloo on CPU, nccl on CUDA). Rank 0 is
the group's only Celery consumer and registry entry; the other ranks follow it
(`worker.group_link`). The supervisor is the group's failure detector: when any rank exits, the
others get a few seconds to finish on their own (rank 0 settles a job whose peer died, by the
lost-worker rule), then the whole group is killed and started again: a process's exit is what
frees its device memory, so a broken group never leaks any. A job left behind by a killed rank 0
is a dead worker's job: the gateway's reaper settles it when its lease expires.

A group that dies before it first became ready (bad arguments, weights, devices) is not
restarted: the supervisor exits with the error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.config import Settings

log = logging.getLogger(__name__)

SETTLE_S = 5.0  # after a rank exits: how long the others may take to stop by themselves
POLL_S = 0.2


@dataclass(frozen=True)
class GroupShape:
    """The devices of one worker group and how one job is split over them."""

    devices: tuple[str, ...]
    ulysses: int = 1
    cfg_parallel: bool = False

    @property
    def world_size(self) -> int:
        return len(self.devices)

    def describe(self) -> dict[str, Any]:
        """The shape as the registry publishes it (`/v1/admin/workers`, `/v1/models`)."""
        return {
            "devices": list(self.devices),
            "world_size": self.world_size,
            "ulysses": self.ulysses,
            "cfg_parallel": self.cfg_parallel,
        }


def parse_shape(devices: str, ulysses: int, cfg_parallel: bool, expert_devices: str = "") -> GroupShape:
    """Check a group's arguments; a ValueError says what is wrong in the flags' own words."""
    names = [d.strip() for d in devices.split(",")]
    if not all(names):
        raise ValueError(f"--devices takes a comma-separated list like cuda:0,cuda:1, got {devices!r}")
    kinds = {n.split(":")[0] for n in names}
    if not kinds <= {"cpu", "cuda"} or len(kinds) != 1:
        raise ValueError(f"--devices: all cpu or all cuda:N, got {devices!r}")
    cuda = [n for n in names if n != "cpu"]
    if len(set(cuda)) != len(cuda):
        raise ValueError(f"--devices: each GPU once, got {devices!r}")
    if ulysses < 1:
        raise ValueError(f"--ulysses must be >= 1, got {ulysses}")
    cfg = 2 if cfg_parallel else 1
    if ulysses * cfg != len(names):
        raise ValueError(
            f"--ulysses {ulysses} x cfg {cfg} = {ulysses * cfg} ranks, but --devices names {len(names)}: "
            "one rank per device"
        )
    if expert_devices:
        raise ValueError("--expert-devices runs one process per job: not with --devices")
    return GroupShape(tuple(names), ulysses, cfg_parallel)


def shape_of(settings: Settings) -> GroupShape | None:
    """The group `settings` describe, or None for a one-process worker."""
    experts = settings.expert_devices
    if experts and len([d for d in experts.split(",") if d.strip()]) != 2:
        raise ValueError(f"--expert-devices takes two devices like cuda:0,cuda:1, got {experts!r}")
    if not settings.devices:
        if settings.ulysses > 1 or settings.cfg_parallel:
            raise ValueError("--ulysses / --cfg-parallel split a job over devices: give them with --devices")
        return None
    return parse_shape(settings.devices, settings.ulysses, settings.cfg_parallel, settings.expert_devices)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_env(settings: Settings, shape: GroupShape, rank: int) -> dict[str, str]:
    """A rank's environment: the supervisor's, with the group's settings and this rank's device."""
    env = dict(os.environ)
    env.update(
        WANSERVE_DEVICE=shape.devices[rank],
        WANSERVE_DEVICES=",".join(shape.devices),
        WANSERVE_ULYSSES=str(shape.ulysses),
        WANSERVE_CFG_PARALLEL=str(shape.cfg_parallel).lower(),
        WANSERVE_WORKER_ID=settings.resolved_worker_id(),  # stable across restarts of the group
    )
    return env


class Group:
    """One start of the group's processes."""

    def __init__(self, settings: Settings, shape: GroupShape, extra_queues: list[str]) -> None:
        self.ready_dir = Path(tempfile.mkdtemp(prefix="wanserve-group-"))
        port = _free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        for rank in range(shape.world_size):
            cmd = [sys.executable, "-m", "worker.group_rank", "--rank", str(rank)]
            cmd += ["--world", str(shape.world_size), "--port", str(port), "--ready-dir", str(self.ready_dir)]
            for q in extra_queues:
                cmd += ["--extra-queue", q]
            self.procs.append(subprocess.Popen(cmd, env=rank_env(settings, shape, rank)))
        log.info("worker group started: ranks %s", [p.pid for p in self.procs])

    def ready(self) -> bool:
        return len(list(self.ready_dir.iterdir())) == len(self.procs)

    def exited(self) -> list[tuple[int, int]]:
        """(rank, exit code) of the ranks that have exited."""
        return [(r, p.returncode) for r, p in enumerate(self.procs) if p.poll() is not None]

    def wait_all(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.exited()) == len(self.procs):
                return True
            time.sleep(POLL_S)
        return False

    def signal_all(self, sig: int) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(sig)

    def kill(self) -> None:
        self.signal_all(signal.SIGKILL)
        for p in self.procs:
            p.wait()
        for f in self.ready_dir.iterdir():
            f.unlink()
        self.ready_dir.rmdir()


def supervise(settings: Settings, shape: GroupShape, extra_queues: list[str]) -> int:
    """Run the group until SIGTERM/SIGINT; restart it whenever a rank dies. Returns the exit code."""
    stopping: list[int] = []

    def on_signal(signum: int, _: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ever_ready = False
    while True:
        group = Group(settings, shape, extra_queues)
        while not stopping and not group.exited():
            ever_ready = ever_ready or group.ready()
            time.sleep(POLL_S)
        if stopping:  # warm shutdown: rank 0 finishes or requeues its job (shutdown grace) with
            # the others still in step, then leaves; they follow it out
            with contextlib.suppress(ProcessLookupError):
                group.procs[0].send_signal(signal.SIGTERM)
            group.wait_all(settings.shutdown_grace_s + 15)
            group.kill()
            return 0
        dead = group.exited()
        log.warning("worker group: rank(s) exited %s; stopping the group", dead)
        group.wait_all(SETTLE_S)  # rank 0 settles a job whose peer died, then exits by itself
        group.kill()
        if not ever_ready:
            sys.stderr.write(f"wanserve worker: the worker group failed to start (rank, exit code): {dead}\n")
            return 1
        log.warning("worker group: restarting")
        time.sleep(1.0)  # a group that keeps dying at once does not spin
