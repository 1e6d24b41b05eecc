"""Source videos in the worker: decode the stored source MP4, fit it to the job's size, and run
an extension (`model.long_video`, the source as segment 0) or an edit (`model.video_edit`)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.core.schemas import JobRecord
from worker.runtime import WorkerRuntime

Frames = NDArray[np.uint8]


def _fit(frame: Frames, width: int, height: int) -> Frames:
    """Cover-resize (Lanczos) and centre-crop one [H, W, 3] frame to width x height."""
    from PIL import Image

    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    scale = max(width / w, height / h)
    nw, nh = max(width, round(w * scale)), max(height, round(h * scale))
    img = Image.fromarray(frame).resize((nw, nh), Image.Resampling.LANCZOS)
    left, top = (nw - width) // 2, (nh - height) // 2
    return np.asarray(img.crop((left, top, left + width, top + height)))


def decode_source(data: bytes, width: int, height: int, max_frames: int | None = None) -> Frames:
    """The source's frames as [F, H, W, 3] uint8 at width x height."""
    import av

    out: list[Frames] = []
    with av.open(io.BytesIO(data), mode="r") as c:
        for frame in c.decode(c.streams.video[0]):
            rgb: Frames = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            out.append(_fit(rgb, width, height))
            if max_frames is not None and len(out) >= max_frames:
                break
    if not out:
        raise ValueError("the source video has no frames")
    return np.stack(out)


def load_source(rt: WorkerRuntime, rec: JobRecord, max_frames: int | None = None) -> Frames:
    assert rec.source_key is not None
    return decode_source(
        rt.storage.get_bytes(rec.source_key), rec.params.width, rec.params.height, max_frames
    )


def run_edit(
    rt: WorkerRuntime, rec: JobRecord, prompt: str, callback: Callable[[int, int, float], None]
) -> tuple[Frames, dict[str, float]]:
    import torch

    from model.long_video import to_uint8
    from model.video_edit import valid_edit_frames
    from worker.group_link import edit_video

    p = rec.params
    src = load_source(rt, rec, max_frames=p.num_frames)
    src = src[: valid_edit_frames(rt.preset, len(src))]
    video = torch.from_numpy(src).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)  # [3, F, H, W]
    out: Any = edit_video(
        rt.pipe,
        prompt,
        video,
        strength=p.strength if p.strength is not None else 0.6,
        seed=p.seed,
        negative_prompt=p.negative_prompt,
        num_steps=p.num_inference_steps,
        guidance_scale=tuple(p.guidance_scale),
        shift=p.shift,
        sampler=p.sampler,
        callback=callback,
    )
    return to_uint8(out), {}
