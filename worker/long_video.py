"""Long videos in the worker: chained segments (`model.long_video`), stored as they finish.

Each finished segment (uint8 frames, colour-matched) is written to storage under the job's
prefix (``videos/<id>/segments/0003.npy``) before the next one starts. A redelivered job (its
worker died; the reaper or the Celery parent requeued it) loads the stored segments and resumes
with the next one; the result equals an uninterrupted run's, because segments are generated
only from finished (stored) segments. The segment files are deleted once the video is stored.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.core.errors import JobCancelled, JobTimeout
from app.core.schemas import JobRecord
from app.core.storage import Storage, job_prefix
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)

Frames = NDArray[np.uint8]


def segment_key(job_id: str, k: int) -> str:
    return f"{job_prefix(job_id)}/segments/{k:04d}.npy"


def needs_segments(rt: WorkerRuntime, rec: JobRecord) -> bool:
    """Long videos, extensions and edits take this path (plain clips the pipeline's `generate`)."""
    return rec.params.segments > 1 or rec.source_key is not None


def load_finished(storage: Storage, job_id: str, start: int = 0) -> list[Frames]:
    """The segments an earlier delivery of this job finished, in order (stops at the first gap)."""
    out: list[Frames] = []
    while storage.exists(key := segment_key(job_id, start + len(out))):
        out.append(np.load(io.BytesIO(storage.get_bytes(key)), allow_pickle=False))
    return out


def _store(storage: Storage, job_id: str, k: int, frames: Frames) -> None:
    buf = io.BytesIO()
    np.save(buf, frames, allow_pickle=False)
    storage.put_bytes(segment_key(job_id, k), buf.getvalue(), "application/octet-stream")


def drop_segments(storage: Storage, job_id: str) -> None:
    try:
        storage.delete_prefix(f"{job_prefix(job_id)}/segments")
    except Exception:  # leftovers go with the job's prefix at deletion / retention
        log.warning("job %s: could not delete its stored segments", job_id)


def generate_segments(
    rt: WorkerRuntime, rec: JobRecord, prompt: str, image: Any, callback: Callable[[int, int, float], None]
) -> tuple[Frames, dict[str, float]]:
    """Run ``rec`` -> frames, timings: an edit, an extension (its source first) or a long video."""
    from worker.video_sources import load_source, run_edit

    if rec.operation == "edit" and rec.source_key:
        return run_edit(rt, rec, prompt, callback)
    source = load_source(rt, rec) if rec.source_key else None
    try:
        return generate_long(rt, rec, prompt, image, callback, source=source)
    except (JobCancelled, JobTimeout):
        drop_segments(rt.storage, rec.id)  # nothing will resume (a lost lease keeps them: it will)
        raise


def generate_long(
    rt: WorkerRuntime,
    rec: JobRecord,
    prompt: str,
    image: Any,
    callback: Callable[[int, int, float], None],
    *,
    source: Frames | None = None,
) -> tuple[Frames, dict[str, float]]:
    """Generate ``rec``'s long video (or extension of ``source``) -> frames, per-segment timings."""
    from model.long_video import generate_long_video

    p = rec.params
    # an extension's segment 0 is its source video (stored as the job's input), never regenerated
    stored = load_finished(rt.storage, rec.id, start=0 if source is None else 1)
    if stored:
        log.info("job %s: resuming after %d stored segments", rec.id, len(stored))
    finished = stored if source is None else [source, *stored]
    marks = [time.monotonic()]
    timings: dict[str, float] = {"segments_resumed": float(len(stored))}

    def on_segment(k: int, frames: Frames) -> None:
        if source is None or k > 0:
            _store(rt.storage, rec.id, k, frames)
        marks.append(time.monotonic())
        timings[f"segment_{k}"] = round(marks[-1] - marks[-2], 4)

    frames = generate_long_video(
        rt.pipe,
        prompt,
        total_frames=p.num_frames
        if source is None
        else len(source) + p.num_frames - (p.source_frames or len(source)),
        seed=p.seed,
        image=image,
        finished=finished,
        on_segment=on_segment,
        callback=callback,
        source=source,
        negative_prompt=p.negative_prompt,
        height=p.height,
        width=p.width,
        num_steps=p.num_inference_steps,
        guidance_scale=tuple(p.guidance_scale),
        shift=p.shift,
        sampler=p.sampler,
        loras=rt.loras.job_loras(p.loras) if p.loras else None,
        cache=p.cache,
    )
    return frames, timings
