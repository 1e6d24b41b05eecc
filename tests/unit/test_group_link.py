"""How rank 0 of a worker group classifies a generation that ends early (`worker.group_link`), in a
one-process gloo world: stops agreed at a step keep the group in step; anything else settles the job
(out of memory, or a lost worker) and asks for a restart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.distributed as dist
from celery.worker import state

from app.core.errors import JobCancelled
from worker.group_link import EXIT_RESTART, GroupLink, GroupLost, LeadPipeline, edit_video


class StepsPipe:
    """A stand-in pipeline: `steps` steps, each reporting to the callback, or raising `fail` at step 2."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.calls: list[dict[str, Any]] = []
        self.preset = "the preset"

    def generate(self, prompt: str, *, callback: Any = None, steps: int = 3, **kw: Any) -> str:
        self.calls.append({"prompt": prompt, **kw})
        for i in range(1, steps + 1):
            if i == 2 and self.fail is not None:
                raise self.fail
            callback(i, steps, 1000.0 - i)
        return f"video of {prompt}"


@pytest.fixture
def link() -> Iterator[GroupLink]:
    store = dist.HashStore()  # type: ignore[attr-defined]
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield GroupLink(store, 0, 1, "cpu")
    dist.destroy_process_group()
    state.should_stop = None


def test_a_generation_is_posted_then_run_with_a_step_agreement(link: GroupLink) -> None:
    pipe, seen = StepsPipe(), []
    lead = LeadPipeline(pipe, link, on_lost=lambda: pytest.fail("not lost"))
    out = lead.generate("a cat", seed=3, callback=lambda i, n, t: seen.append(i))
    assert out == "video of a cat" and seen == [1, 2, 3] and lead.preset == "the preset"
    assert link.seq == 1 and pipe.calls == [{"prompt": "a cat", "seed": 3}]
    assert link.pids() and link.peer_failure() is None


def test_a_stop_decided_at_a_step_keeps_the_group_in_step(link: GroupLink) -> None:
    def cancel(i: int, n: int, t: float) -> None:
        if i == 2:
            raise JobCancelled("cancelled")

    lead = LeadPipeline(StepsPipe(), link, on_lost=lambda: pytest.fail("not lost"))
    with pytest.raises(JobCancelled):
        lead.generate("a cat", callback=cancel)
    assert not lead.out_of_step and state.should_stop is None
    with pytest.raises(ValueError):  # refused alike on every rank before any collective
        LeadPipeline(StepsPipe(ValueError("bad size")), link, on_lost=lambda: None).generate("x")
    assert state.should_stop is None


def test_a_broken_generation_is_a_lost_job_and_restarts_the_group(link: GroupLink) -> None:
    lost: list[bool] = []
    lead = LeadPipeline(StepsPipe(RuntimeError("Connection reset by peer")), link, lambda: lost.append(True))
    with pytest.raises(GroupLost):
        lead.generate("a cat")
    assert lost == [True] and lead.out_of_step and state.should_stop == EXIT_RESTART
    with pytest.raises(GroupLost):  # nothing more runs on a group out of step
        lead.generate("again")
    assert lost == [True, True]


def test_out_of_memory_fails_the_job_as_on_one_device(link: GroupLink) -> None:
    lead = LeadPipeline(StepsPipe(torch.OutOfMemoryError("CUDA out of memory")), link, lambda: None)
    with pytest.raises(torch.OutOfMemoryError):
        lead.generate("a cat")
    assert state.should_stop == EXIT_RESTART
    link.store.set(f"failed/{link.seq + 1}/1", "out of memory")  # a follower's report for the next call
    link.world = 2
    lead = LeadPipeline(StepsPipe(RuntimeError("peer gone")), link, lambda: pytest.fail("an OOM"))
    with pytest.raises(torch.OutOfMemoryError, match="out of memory on rank 1"):
        lead.run("generate", "a dog")


def test_edit_video_runs_on_the_pipeline_it_is_given() -> None:
    with pytest.raises(ValueError, match="strength must be in"):  # model.video_edit's own check
        edit_video(StepsPipe(), "p", torch.zeros(3, 5, 16, 16), strength=2.0, seed=0)
