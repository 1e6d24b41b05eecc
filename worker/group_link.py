"""How the ranks of a worker group run one job together (`worker.group` starts them).

Rank 0 is an ordinary worker whose pipeline is a `LeadPipeline`: each ``generate`` call (a job, a
long video's segment, a warm-up) and each video edit (`edit_video`: edits, refine) is first posted
to the others through the group's TCP store (`GroupLink.post`; waiting there costs nothing and
never times out, unlike a collective), then run on every rank with the same arguments and seed
(`model.parallel` splits the work). Other ranks loop in `follow`.

Once per denoising step the ranks agree whether to go on (`GroupLink.agree_stop`, one broadcast
from rank 0): rank 0's step callback (progress, cancel, time limit, lost lease) decides, so a
cancel stops every rank within the same step, and the group stays in step for the next job.

Anything else that interrupts a generation leaves the ranks out of step (one of them is inside a
collective the others left): rank 0 then settles the job as one device would (a follower's
out-of-memory fails it as ``out_of_memory``; a dead or failed peer is a lost worker:
`worker.group_rank.settle_group_loss`), and the group restarts after it (`restart_group`).
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import pickle
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from worker.leases import LeaseLost
from worker.memory import is_oom

log = logging.getLogger(__name__)

IDLE_WAIT = datetime.timedelta(seconds=600)  # a follower's wait for the next job, renewed forever


class GroupStop(Exception):
    """Rank 0 stopped the generation at a step (cancel, time limit): followers abandon it."""


class GroupLost(LeaseLost):
    """A peer died or failed mid-job: the job was settled as a lost worker's; write nothing more."""


class GroupLink:
    """Messages from rank 0 to the others (the store) and the per-step agreement (a collective)."""

    def __init__(self, store: Any, rank: int, world: int, device: str) -> None:
        self.store, self.rank, self.world = store, rank, world
        self.seq = 0
        self.flag = torch.zeros(1, dtype=torch.int32, device=device)
        self._unread: list[int] = []
        store.set(f"pid/{rank}", str(os.getpid()))

    def post(self, msg: dict[str, Any]) -> None:
        """Rank 0: hand the next call to every follower."""
        self._forget_read()
        self.seq += 1
        self.store.set(f"msg/{self.seq}", pickle.dumps(msg))
        self._unread.append(self.seq)

    def _forget_read(self) -> None:
        for seq in list(self._unread):
            if int(self.store.add(f"read/{seq}", 0)) >= self.world - 1:
                self.store.delete_key(f"msg/{seq}")
                self.store.delete_key(f"read/{seq}")
                self._unread.remove(seq)

    def receive(self) -> dict[str, Any]:
        """A follower: block until rank 0 posts the next call (an error when rank 0 is gone)."""
        self.seq += 1
        key = f"msg/{self.seq}"
        while True:
            try:
                self.store.wait([key], IDLE_WAIT)
                break
            except dist.DistStoreError as exc:
                if "timeout" not in str(exc):
                    raise
        # the store is the group's own (rank 0 on this machine, a port only the group knows)
        msg: dict[str, Any] = pickle.loads(self.store.get(key))  # noqa: S301
        self.store.add(f"read/{self.seq}", 1)
        return msg

    def pids(self) -> list[int]:
        """Every rank's process id (each rank posts its own when it joins)."""
        return [int(self.store.get(f"pid/{r}")) for r in range(self.world)]

    def agree_stop(self, stop: bool) -> bool:
        """Every rank, once per step: rank 0's decision, on every rank."""
        self.flag.fill_(1 if stop else 0)
        dist.broadcast(self.flag, src=0)
        return bool(self.flag.item())

    def report_failure(self, what: str) -> None:
        """A follower whose generation failed on its own says why, before it exits."""
        self.store.set(f"failed/{self.seq}/{self.rank}", what)

    def peer_failure(self) -> str | None:
        """Rank 0: what a follower reported for the current call, if any."""
        for r in range(1, self.world):
            key = f"failed/{self.seq}/{r}"
            if self.store.check([key]):
                return f"rank {r}: {self.store.get(key).decode()}"
        return None


def _operation(pipe: Any, op: str) -> Callable[..., Any]:
    """The pipeline call a posted message names, bound to this rank's pipeline."""
    if op == "generate":
        return pipe.generate  # type: ignore[no-any-return]
    if op == "edit_video":
        from model.video_edit import edit_video

        return functools.partial(edit_video, pipe)
    raise ValueError(f"unknown group operation {op!r}")


class LeadPipeline:
    """Rank 0's pipeline: ``generate`` and `edit_video` run on the whole group; the rest is local."""

    def __init__(self, pipe: Any, link: GroupLink, on_lost: Callable[[], None]) -> None:
        self._pipe, self._link, self._on_lost = pipe, link, on_lost
        self.out_of_step = False  # set when a generation broke off without the ranks agreeing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    def generate(self, prompt: str, **kw: Any) -> Any:
        return self.run("generate", prompt, **kw)

    def run(self, op: str, *args: Any, callback: Any = None, preview: Any = None, **kw: Any) -> Any:
        if self.out_of_step:  # broke off earlier in this job: the group restarts after it
            self._on_lost()
            raise GroupLost("the worker group is restarting")
        loras = kw.get("loras")
        names = [(spec.name, scale) for spec, scale in loras] if loras else None
        sent = {**kw, "loras": names} if "loras" in kw else kw
        self._link.post({"op": op, "args": args, "kw": sent})
        stopped: list[bool] = []

        def step(i: int, total: int, t: float) -> None:
            try:
                if callback is not None:
                    callback(i, total, t)
            except BaseException:
                stopped.append(True)
                self._link.agree_stop(True)
                raise
            self._link.agree_stop(False)

        local = {**kw, "callback": step, **({"preview": preview} if preview is not None else {})}
        try:
            return _operation(self._pipe, op)(*args, **local)
        except Exception as exc:
            if stopped or isinstance(exc, ValueError):  # every rank stopped at the same place
                raise
            self.out_of_step = True
            restart_group()
            failure = self._link.peer_failure()
            if failure is not None and "out of memory" in failure:
                raise torch.OutOfMemoryError(f"out of memory on {failure}") from exc
            if is_oom(exc):
                raise
            log.error("worker group: a generation broke off (%r; %s): the job is lost", exc, failure)
            self._on_lost()
            raise GroupLost(f"a rank of the worker group failed: {failure or exc!r}") from exc


def edit_video(pipe: Any, prompt: str, video: Any, **kw: Any) -> Any:
    """`model.video_edit.edit_video` on the whole group when `pipe` is a group's (else on `pipe`)."""
    if isinstance(pipe, LeadPipeline):
        return pipe.run("edit_video", prompt, video, **kw)
    return _operation(pipe, "edit_video")(prompt, video, **kw)


def follow(pipe: Any, link: GroupLink, resolve_loras: Callable[[list[tuple[str, float]]], Any]) -> None:
    """A follower rank: run every call rank 0 posts, in step with it, until the process ends."""

    def step(i: int, total: int, t: float) -> None:
        if link.agree_stop(False):
            log.info("rank %d: stopped by rank 0 at step %d/%d", link.rank, i, total)
            raise GroupStop

    while True:
        try:
            msg = link.receive()
        except dist.DistError as exc:  # rank 0 left (the group stops or restarts): so do we
            log.info("rank %d: rank 0 is gone (%s); leaving", link.rank, exc)
            return
        kw = dict(msg["kw"])
        if kw.get("loras"):
            kw["loras"] = resolve_loras(kw["loras"])
        try:
            _operation(pipe, msg["op"])(*msg["args"], callback=step, **kw)
        except (GroupStop, ValueError):  # stopped by rank 0, or refused on every rank alike
            continue
        except Exception as exc:
            link.report_failure("out of memory" if is_oom(exc) else f"{type(exc).__name__}: {exc}"[:300])
            raise


def restart_group() -> None:
    """Rank 0: stop consuming after the current job; the supervisor then restarts the whole group."""
    from celery.worker import state

    state.should_stop = EXIT_RESTART


EXIT_RESTART = 75  # rank 0 left so the group restarts in step
