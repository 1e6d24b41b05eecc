"""One rank of a worker group: ``python -m worker.group_rank --rank R ...`` (started by `worker.group`).

Every rank joins the group's ``torch.distributed`` world through a TCP store on rank 0, builds the
Ulysses / CFG groups (`model.parallel.init_parallel`, as ``python -m model`` does) and loads the
pipeline on its device (``WANSERVE_DEVICE``, set per rank by the supervisor). Rank 0 then runs an
ordinary worker with the solo pool, so that the jobs run in the process that owns the process
group; it alone consumes, heartbeats and writes. The others follow it (`worker.group_link.follow`).
Each rank touches a file in ``--ready-dir`` once it is ready to serve.
"""

from __future__ import annotations

import argparse
import datetime
import faulthandler
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.config import Settings
from app.core.leases import Leases
from app.core.logjson import setup_logging
from worker.group import GroupShape, shape_of

if TYPE_CHECKING:
    from worker.group_link import GroupLink
    from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)


@dataclass
class GroupMember:
    """This process's place in its worker group."""

    rank: int
    shape: GroupShape
    link: GroupLink
    parallel: Any  # model.parallel.ParallelState
    ready_file: Path

    def enable(self, pipe: Any) -> None:
        from model.parallel import enable_parallel

        enable_parallel(pipe, self.parallel)

    def lead(self, pipe: Any, on_lost: Any) -> Any:
        from worker.group_link import LeadPipeline

        return LeadPipeline(pipe, self.link, on_lost)

    def mark_ready(self) -> None:
        self.ready_file.touch()


_member: GroupMember | None = None


def group_member() -> GroupMember | None:
    """This process's group membership, or None in a one-process worker."""
    return _member


def join_group(settings: Settings, rank: int, world: int, port: int, ready_dir: Path) -> GroupMember:
    """Join the world (collective: every rank calls this with the same settings)."""
    import torch
    import torch.distributed as dist

    from model.parallel import init_parallel
    from worker.group_link import GroupLink

    global _member
    shape = shape_of(settings)
    if shape is None or shape.world_size != world:
        raise ValueError(f"rank {rank}: WANSERVE_DEVICES does not describe a group of {world}")
    device = settings.device
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    # a rank waits this long in a collective for the others (loading the model is the longest)
    wait = datetime.timedelta(seconds=settings.model_load_timeout_s)
    tcp_store: Any = dist.TCPStore  # type: ignore[attr-defined]
    store = tcp_store("127.0.0.1", port, world, is_master=rank == 0, timeout=wait)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=wait)
    parallel = init_parallel(shape.ulysses, shape.cfg_parallel, device)
    link = GroupLink(store, rank, world, device)
    _member = GroupMember(rank, shape, link, parallel, ready_dir / str(rank))
    return _member


def settle_group_loss(rt: WorkerRuntime) -> None:
    """Rank 0, a peer lost mid-job: settle the job as a dead worker's (requeue, or fail after the
    last attempt), once: whoever claims its lease first (this, the reaper, the shutdown grace) does."""
    job_id = rt.current_job
    if job_id is None:
        return
    from celery import current_app

    from worker.celery_app import requeue_job
    from worker.lost import settle_lost_job

    s = rt.settings

    def claim(jid: str) -> bool:
        return Leases(rt.redis).claim(jid, time.time(), expired=False, owner=rt.worker_id) is not None

    outcome = settle_lost_job(
        rt.store,
        job_id,
        timed_out=False,
        max_attempts=s.max_attempts,
        time_limit_s=s.job_time_limit_s,
        requeue=lambda jid, model: requeue_job(current_app, rt.store, jid, model),
        claim=claim,
    )
    log.warning("job %s: a rank of the worker group was lost: %s", job_id, outcome)


def _follower(settings: Settings, member: GroupMember) -> None:
    from worker.group_link import follow
    from worker.loras import LoraCache
    from worker.runtime import load_worker_pipeline

    pipe = load_worker_pipeline(settings)
    loras = LoraCache(settings.lora_dir, settings.lora_cache_bytes)
    member.mark_ready()
    log.info("rank %d ready on %s", member.rank, settings.device)
    follow(pipe, member.link, lambda refs: [(loras.get(name), scale) for name, scale in refs])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m worker.group_rank")
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--world", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ready-dir", type=Path, required=True)
    ap.add_argument("--extra-queue", action="append", default=[])
    args = ap.parse_args(argv)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <rank>`: where a stuck rank waits
    settings = Settings()
    setup_logging(settings.log_level, settings.log_format, f"worker-rank{args.rank}")
    try:
        member = join_group(settings, args.rank, args.world, args.port, args.ready_dir)
        if args.rank == 0:
            from worker.main import run_worker

            run_worker(settings, pool="solo", extra_queues=args.extra_queue, preload=True)
            return 0
        _follower(settings, member)
    except ValueError as exc:  # bad group arguments for this model (heads, sizes): say so plainly
        sys.stderr.write(f"wanserve worker: rank {args.rank}: {exc}\n")
        return 2
    return 0


def run_rank() -> None:
    """`main`, then leave at once: the process group's threads and sockets can hold up an orderly
    interpreter exit (a rank that failed to start would never end), and exiting frees everything."""
    code = 1
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":  # the imported module's function: the runtime looks up its `_member`
    from worker.group_rank import run_rank as module_run

    module_run()
