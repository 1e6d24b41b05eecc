"""Long videos at the gateway: a ``seconds`` beyond the model's native length becomes segments.

The worker (`model.long_video`) chains segments of the model's ``max_num_frames`` frames, each
conditioned through the model's image mode on the previous one, sharing ``overlap`` frames. This
module mirrors the segment count of `model.long_video.plan_for` (the gateway never imports
`model`; `tests/unit/test_long_video_params.py` checks that the two agree) so that
``total_steps`` and ``parameters.segments`` are right from the start.

Only models with an image mode (``image_input`` optional or required: I2V, TI2V) can make long
videos; a T2V-only model is refused with 400 on ``seconds``. ``max_video_seconds`` bounds the length.
"""

from __future__ import annotations

import math

from app.core.errors import InvalidInput
from app.core.schemas import ModelInfo, ResolvedParams, VideoCreate


def default_overlap(segment_frames: int) -> int:
    return max(1, min(4, segment_frames // 4))


def segment_count(total_frames: int, segment_frames: int, *, source_frames: int | None = None) -> int:
    """Segments to *generate* for ``total_frames`` (an extension's source is not generated)."""
    o = default_overlap(segment_frames)
    if source_frames is None:
        if total_frames <= segment_frames:
            return 1
        return 1 + math.ceil((total_frames - segment_frames) / (segment_frames - o))
    rest = total_frames - source_frames  # the first new segment adds segment_frames - 1 frames
    if rest <= segment_frames - 1:
        return 1
    return 1 + math.ceil((rest - (segment_frames - 1)) / (segment_frames - o))


def requested_frames(seconds: float | str, fps: int) -> int:
    """Frames for ``seconds`` at ``fps`` without the model's clamp (``4*round(s*fps/4)+1``)."""
    return 4 * math.floor(float(seconds) * fps / 4 + 0.5) + 1


def apply_long_video(
    req: VideoCreate, info: ModelInfo, params: ResolvedParams, *, max_video_seconds: float
) -> ResolvedParams:
    """``params`` with ``num_frames`` and ``segments`` for a long ``seconds`` (else unchanged)."""
    if req.seconds is None or req.num_frames is not None:
        return params
    frames = requested_frames(req.seconds, params.fps)
    if frames <= info.max_num_frames:
        return params
    native = info.max_num_frames / params.fps
    if info.image_input == "none":
        raise InvalidInput.field(
            "seconds",
            f"{info.model_id} makes at most {native:g} s ({info.max_num_frames} frames) and has no image "
            "mode to chain segments; long videos need an I2V or TI2V model",
        )
    if float(req.seconds) > max_video_seconds:
        raise InvalidInput.field("seconds", f"at most {max_video_seconds:g} s (WANSERVE_MAX_VIDEO_SECONDS)")
    if params.refine_strength is not None:
        raise InvalidInput.field("upscale_refine", "the refine pass works on one clip, not on a long video")
    segments = segment_count(frames, info.max_num_frames)
    return params.model_copy(update={"num_frames": frames, "segments": segments})
