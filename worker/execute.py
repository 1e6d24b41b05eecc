"""One job, start to finish, as plain functions (the Celery task is a thin wrapper around `run_job`).

load the record → skip it if gone, finished or cancelled → fail it after too many lost attempts →
mark in_progress → (redelivered with outputs already stored? complete) → generate with a per-step
callback (progress event, cancel flag, deadline) and a throttled live preview (`worker.preview`) →
encode MP4 + thumbnail → upload under keys derived from the job id → mark completed. Every failure
ends in a truthful terminal status.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from app.core.cancel_after import deadline_reason
from app.core.errors import DeadlinePassed, JobCancelled, JobError, JobTimeout, StorageError
from app.core.jobstore import Fence, TransitionRejected
from app.core.lost import lost_job_error, timeout_message
from app.core.schemas import JobErrorInfo, JobRecord
from app.core.status import JobStatus
from app.core.storage import job_key, job_prefix
from worker.encode import encode_mp4, write_thumbnail
from worker.leases import LeaseLost, lease_lost
from worker.long_video import drop_segments, generate_segments, needs_segments
from worker.memory import is_oom, maybe_simulate_oom, oom_message
from worker.postprocess import apply_output, refine
from worker.preview import make_preview_hook
from worker.prompt_extend import prepare_job_prompt
from worker.runtime import WorkerRuntime
from worker.spritesheet import write_spritesheet

log = logging.getLogger(__name__)


class StepClock:
    """Per-step callback: publishes progress, honours cancel and deadline, times the stages."""

    def __init__(
        self,
        rt: WorkerRuntime,
        job_id: str,
        deadline: float,
        fence: str | None = None,
        cancel_at: tuple[float, str] | None = None,
    ) -> None:
        """``deadline``: the time limit (monotonic); ``cancel_at``: the request's own deadline (unix
        seconds) and the reason recorded when it passes."""
        self.rt, self.job_id, self.deadline, self.fence = rt, job_id, deadline, fence
        self.cancel_at = cancel_at
        self.t0 = time.monotonic()
        self.step_times: list[float] = []

    def __call__(self, step: int, total: int, timestep: float) -> None:
        self.step_times.append(time.monotonic())
        if self.rt.settings.debug_step_delay_s:
            time.sleep(self.rt.settings.debug_step_delay_s)
        maybe_simulate_oom(self.rt, self.job_id, step)  # testing aid, off unless debug_oom_marker is set
        if lease_lost(self.job_id):  # the reaper / shutdown grace requeued the job: stop, write nothing
            raise LeaseLost("the job's lease was claimed by another")
        res = self.rt.store.progress(self.job_id, step, total, self.fence or False)
        if res == -2:  # a newer attempt owns the job (this one was paused past its lease)
            raise LeaseLost("a newer attempt took the job over")
        if res != 0:
            raise JobCancelled("cancelled" if res == 1 else "job removed")
        if time.monotonic() > self.deadline:
            raise JobTimeout("the job ran past its time limit")
        if self.cancel_at is not None and time.time() >= self.cancel_at[0]:
            raise DeadlinePassed(self.cancel_at[1])

    def timings(self, t_end: float) -> dict[str, float]:
        ts = self.step_times
        if not ts:
            return {"generation": t_end - self.t0}
        step = (ts[-1] - ts[0]) / (len(ts) - 1) if len(ts) > 1 else 0.0
        # text encoding precedes step 1; split it from the first step with the mean step time
        out = {"text_encoding": max(0.0, ts[0] - self.t0 - step), "denoising": ts[-1] - ts[0] + step}
        out["decoding"] = t_end - ts[-1]
        return {k: round(v, 4) for k, v in out.items()}


def _to_frames(video: Any) -> Any:
    """[3, F, H, W] float in [-1, 1] → [F, H, W, 3] uint8."""
    import torch

    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def _generate_and_upload(rt: WorkerRuntime, rec: JobRecord) -> tuple[dict[str, str], dict[str, float]]:
    p, s = rec.params, rt.settings
    image = None
    if rec.input_key:
        from PIL import Image

        image = Image.open(io.BytesIO(rt.storage.get_bytes(rec.input_key))).convert("RGB")
    prompt, prompt_timings = prepare_job_prompt(rec, extender=rt.extender, store=rt.store)
    clock = StepClock(
        rt, rec.id, time.monotonic() + s.soft_time_limit_s, rec.attempt_token, cancel_at=_cancel_at(rec)
    )
    if needs_segments(rt, rec):  # long video / extension: chained segments
        frames, seg_timings = generate_segments(rt, rec, prompt, image, clock)
        timings = {**prompt_timings, **clock.timings(time.monotonic()), **seg_timings}
        out = _encode_and_upload(rt, rec, frames, timings)
        drop_segments(rt.storage, rec.id)  # the video is stored: resuming is no longer needed
        return out
    video = rt.pipe.generate(
        prompt,
        negative_prompt=p.negative_prompt,
        image=image,
        height=p.height,
        width=p.width,
        num_frames=p.num_frames,
        num_steps=p.num_inference_steps,
        guidance_scale=tuple(p.guidance_scale),
        shift=p.shift,
        sampler=p.sampler,
        seed=p.seed,
        callback=clock,
        loras=rt.loras.job_loras(p.loras) if p.loras else None,
        cache=p.cache,
        preview=make_preview_hook(rt, rec.id, rec.attempt_token or False),
    )
    timings = {**prompt_timings, **clock.timings(time.monotonic())}
    if p.cache is not None and rt.pipe.last_cache is not None:  # what step caching saved
        timings["steps_computed"] = rt.pipe.last_cache.steps_computed
        timings["steps_skipped"] = rt.pipe.last_cache.steps_skipped
    return _encode_and_upload(rt, rec, _to_frames(video), timings)


def _encode_and_upload(
    rt: WorkerRuntime, rec: JobRecord, frames: Any, timings: dict[str, float]
) -> tuple[dict[str, str], dict[str, float]]:
    p, s = rec.params, rt.settings
    t = time.monotonic()
    tmp_root = s.data_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
        mp4, thumb = Path(tmp) / "video.mp4", Path(tmp) / "thumbnail.webp"
        if p.refine_strength:  # upscale + a low-strength pass of the model at the target size
            frames = refine(rt, rec, frames)
        frames, out_fps = apply_output(frames, p, rt.interpolator)  # upscale, raise the frame rate
        encode_mp4(frames, mp4, fps=out_fps)
        write_thumbnail(frames[0], thumb)
        sheet = Path(tmp) / "spritesheet.webp"
        write_spritesheet(frames, sheet)
        timings["encoding"] = round(time.monotonic() - t, 4)
        t = time.monotonic()
        assets = {"video": job_key(rec.id, "video"), "thumbnail": job_key(rec.id, "thumbnail")}
        assets["spritesheet"] = job_key(rec.id, "spritesheet")
        rt.storage.put_file(assets["thumbnail"], thumb, "image/webp")
        rt.storage.put_file(assets["spritesheet"], sheet, "image/webp")
        rt.storage.put_file(assets["video"], mp4, "video/mp4")  # last: its presence means "all stored"
        timings["upload"] = round(time.monotonic() - t, 4)
    return assets, timings


def _cancel_at(rec: JobRecord) -> tuple[float, str] | None:
    return None if rec.deadline_at is None else (rec.deadline_at, deadline_reason(rec.cancel_after))


def _cancel_overdue(rt: WorkerRuntime, rec: JobRecord) -> str:
    """Picked up past its deadline (the gateway's sweeper had not looked yet): cancel, never run."""
    reason = deadline_reason(rec.cancel_after)
    try:
        fields = {"cancel_requested": True, "cancel_reason": reason}
        rt.store.transition(rec, JobStatus.CANCELLED, fields, fence=_fence(rec))
    except TransitionRejected:
        return "skipped"
    log.info("job %s cancelled before it started: %s", rec.id, reason)
    return "cancelled"


def _fail(rt: WorkerRuntime, rec: JobRecord, code: str, message: str) -> str:
    try:
        rt.store.transition(
            rec, JobStatus.FAILED, {"error": JobErrorInfo(code=code, message=message)}, fence=_fence(rec)
        )
    except TransitionRejected:
        pass
    return "failed"


def _fence(rec: JobRecord) -> Fence:
    """The attempt token this worker holds for ``rec`` (False before it started an attempt)."""
    return rec.attempt_token if rec.status is JobStatus.IN_PROGRESS and rec.attempt_token else False


def _drop_assets_if_gone(rt: WorkerRuntime, rec: JobRecord, exc: TransitionRejected) -> None:
    """Remove the job's files only when its record no longer exists (deleted while running).

    A refusal for any other reason (a newer attempt owns the job, it already finished) means the
    files may be someone else's finished video: never touch them.
    """
    if exc.gone:
        rt.storage.delete_prefix(job_prefix(rec.id))
    else:
        log.warning("job %s: transition refused (%s); its files are left alone", rec.id, exc)


def run_job(rt: WorkerRuntime, job_id: str) -> str:
    """Run one job; returns the outcome (completed, failed, cancelled, skipped, gone)."""
    picked_up = time.time()
    rec = rt.store.get(job_id)
    if rec is None:
        return "gone"
    if rec.status.is_terminal:
        return "skipped"  # redelivery of a finished job, or cancelled while queued
    lost = lost_job_error(rec, rt.settings.max_attempts)  # redelivered after its last attempt died
    if lost is not None:
        return _fail(rt, rec, lost.code, lost.message)
    if rec.deadline_at is not None and picked_up >= rec.deadline_at:
        return _cancel_overdue(rt, rec)
    fields: dict[str, Any] = {
        "started_at": picked_up,
        "attempts": rec.attempts + 1,
        "worker_id": rt.worker_id,
        "step": 0,  # a redelivered job starts over
        "progress": 0,
        "attempt_token": uuid.uuid4().hex,  # fences this attempt: a stale one can change nothing
    }
    if rec.params.output_fps and rec.params.interpolation != rt.interpolation:
        # the gateway chose from the model's published preset; this worker may differ (weights
        # configured on some workers only): the record says what is really used
        fields["params"] = rec.params.model_copy(update={"interpolation": rt.interpolation})
    # the first attempt's queue wait is kept on redelivery
    fields["timings"] = {"queue_wait": round(picked_up - rec.created_at, 4), **rec.timings}
    try:
        rec = rt.store.transition(rec, JobStatus.IN_PROGRESS, fields, fence=rec.attempt_token)
    except TransitionRejected:
        return "skipped"
    rt.set_busy(job_id)
    outcome = "failed"
    try:
        outcome = _run_started(rt, rec)
        return outcome
    finally:
        rt.set_busy(None)
        # A completed job's tensors are freed by reference counting; only an interrupted one can
        # leave cycles (tracebacks holding frames holding tensors) that need a full collection,
        # which costs ~0.4 s and would delay the next job's pickup.
        rt.free_device_memory(collect=outcome != "completed")


def _run_started(rt: WorkerRuntime, rec: JobRecord) -> str:
    video_key, thumb_key = job_key(rec.id, "video"), job_key(rec.id, "thumbnail")
    try:
        if rt.storage.exists(video_key):  # a previous delivery stored everything, then was lost
            assets = {"video": video_key, "thumbnail": thumb_key}
            if rt.storage.exists(job_key(rec.id, "spritesheet")):
                assets["spritesheet"] = job_key(rec.id, "spritesheet")
            timings: dict[str, float] = {}
        else:
            if rt.store.cancel_requested(rec.id):
                raise JobCancelled("cancelled before start")
            assets, timings = _generate_and_upload(rt, rec)
        done = {"assets": assets, "timings": {**rec.timings, **timings}, "progress": 100}
        done["step"] = rec.total_steps or rec.params.num_inference_steps
        try:
            rt.store.transition(rec, JobStatus.COMPLETED, done, fence=rec.attempt_token)
        except TransitionRejected as exc:
            if exc.reason != "cancel":
                raise
            # a cancel answered 202 landed after the last step: honour it (the flag is checked in
            # the same atomic script as the completion, so no cancel is ever answered and ignored)
            raise JobCancelled("cancelled after the last step") from None
        return "completed"
    except LeaseLost:
        log.warning("job %s: lease lost; abandoned (requeued elsewhere)", rec.id)
        return "lost"
    except JobCancelled as exc:
        fields: dict[str, Any] = {"cancel_requested": True}
        if isinstance(exc, DeadlinePassed):
            fields["cancel_reason"] = exc.detail
            log.info("job %s cancelled mid-run: %s", rec.id, exc.detail)
        try:
            rt.store.transition(rec, JobStatus.CANCELLED, fields, fence=rec.attempt_token)
        except TransitionRejected as exc:
            _drop_assets_if_gone(rt, rec, exc)  # deleted while running: leave nothing behind
            return "gone" if exc.gone else "lost"
        for variant in ("video", "thumbnail"):  # uploaded before a cancel that came after the last step
            rt.storage.delete(job_key(rec.id, variant))
        return "cancelled"
    except TransitionRejected as exc:  # deleted between upload and completion, or superseded
        _drop_assets_if_gone(rt, rec, exc)
        return "gone" if exc.gone else "lost"
    except (JobTimeout, SoftTimeLimitExceeded):
        return _fail(rt, rec, "timeout", timeout_message(rt.settings.job_time_limit_s))
    except JobError as exc:
        return _fail(rt, rec, exc.code, exc.detail)
    except StorageError as exc:  # upload failed after the backend's retries: never "completed"
        log.error("job %s: storage failed: %s", rec.id, exc.detail)
        return _fail(rt, rec, "storage_error", "storing the result failed; see the worker log")
    except ValueError as exc:  # the pipeline's check_inputs
        return _fail(rt, rec, "invalid_input", str(exc)[:500])
    except Exception as exc:
        if is_oom(exc):
            log.error("job %s: device out of memory: %s", rec.id, exc)
            del exc  # drop the traceback's frames (and their tensors) before freeing the cache
            rt.free_device_memory()
            return _fail(rt, rec, "out_of_memory", oom_message(rec, rt.settings.device))
        log.exception("job %s failed", rec.id)
        return _fail(rt, rec, "internal_error", f"{type(exc).__name__}: generation failed")
