"""Pipelining consecutive jobs through a two-expert (A14B) model whose experts live on two devices.

A job is two phases: the high-noise steps (text encoding, conditioning, then the high-noise expert)
and the low-noise steps plus the VAE decode. With the experts on two devices (`place_experts`),
job k's low-noise phase can run while job k+1's high-noise phase runs: two threads, each owning one
expert, hand a `DenoiseState` over through a one-slot queue. In steady state a job leaves every
max(high, low) phase time instead of every high + low.

Threads suffice on GPUs (kernels run outside the GIL and each thread drives its own device); the
two-process CPU simulation in `bench/bench_expert_pipeline.py` uses processes pinned to one core.
Results equal sequential `generate` calls: each job has its own seed, sampler and state.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from model.denoise_state import DenoiseState

__all__ = ["pipelined_generate", "sequential_generate"]

_DONE = object()


def sequential_generate(pipe: Any, requests: Sequence[Mapping[str, Any]]) -> list[torch.Tensor]:
    """One job after the other, both phases each (the reference for `pipelined_generate`)."""
    return [pipe.generate_low(pipe.generate_high(**req)) for req in requests]


def pipelined_generate(pipe: Any, requests: Sequence[Mapping[str, Any]]) -> list[torch.Tensor]:
    """Run `requests` (keyword arguments of `generate_high`, `prompt` included) with job k's
    low-noise phase overlapping job k+1's high-noise phase. -> the videos in request order.

    An error in either phase stops the run and is raised here, after both threads have ended.
    """
    if pipe.transformer_2 is None:
        raise ValueError(f"{pipe.preset.model_id!r} has one expert: nothing to pipeline")
    handoff: queue.Queue[Any] = queue.Queue(maxsize=1)  # one job in flight between the phases
    stop = threading.Event()
    errors: list[BaseException] = []

    def high_phase() -> None:
        try:
            for req in requests:
                if stop.is_set():
                    return
                state: DenoiseState = pipe.generate_high(**req)
                while not stop.is_set():
                    try:
                        handoff.put(state, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)
        finally:
            handoff.put(_DONE)  # never blocks for long: the low phase drains until _DONE

    worker = threading.Thread(target=high_phase, name="high-noise-expert", daemon=True)
    worker.start()
    videos: list[torch.Tensor] = []
    try:
        while (item := handoff.get()) is not _DONE:
            if not errors:
                videos.append(pipe.generate_low(item))
    except BaseException:
        stop.set()
        while handoff.get() is not _DONE:  # unblock the high phase, then let it end
            pass
        raise
    finally:
        worker.join()
    if errors:
        raise errors[0]
    return videos
