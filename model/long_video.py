"""Long videos: consecutive segments chained through the model's image mode, joined without a seam.

A model generates at most `preset.max_num_frames` frames at once. For a longer video each segment
after the first is conditioned on a frame of the previous one through the model's image mode
(TI2V: latent frame 0 pinned to the image; I2V-A14B: the `y` condition). T2V-only models have
no image mode and are refused (`ValueError`).

Join (per segment k >= 1, `o` = overlap frames, `S_k` = segment length):

* segment k is conditioned on frame `S_{k-1} - o` of segment k-1, so its first `o` frames cover
  the same instants as the last `o` frames of segment k-1 (its frame 0 reproduces that frame);
* colour drift: every channel of segment k is mapped affinely so that the mean and standard
  deviation of its first `o` frames equal those of the last `o` frames of segment k-1 (each
  segment is matched to an already-matched one, so drift cannot accumulate); the gain is
  bounded to [0.5, 2] so a near-flat overlap cannot blow a segment up;
* the `o` overlapping frames are cross-faded linearly, weight `(j + 1) / (o + 1)` on segment k.

Every segment is quantised to uint8 after its colour match ("a finished segment"): the worker
stores exactly that, and the join and the next segment's conditioning read only finished
segments, so a run resumed from stored segments gives the same video as an uninterrupted one.
Segment k's seed is derived from the request seed (`segment_seed`); segment 0 uses it as is, so
a one-segment long video equals a plain `generate`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = [
    "SegmentPlan",
    "check_long_video_support",
    "generate_long_video",
    "join_segments",
    "match_colour",
    "plan_for",
    "plan_segments",
    "segment_seed",
]

Frames = NDArray[np.uint8]  # [F, H, W, 3]
SegmentCallback = Callable[[int, Frames], None]
StepCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class SegmentPlan:
    """How a video of `total_frames` is cut: `lengths[k]` frames generated for segment k, and
    `overlaps[k]` frames shared by segment k with segment k-1 (`overlaps[0] == 0`)."""

    total_frames: int
    lengths: tuple[int, ...]
    overlaps: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.lengths)

    def new_frames(self, k: int) -> int:
        """Frames segment k adds to the video (its overlap is shared with segment k-1)."""
        return self.lengths[k] - self.overlaps[k]


def default_overlap(segment_frames: int) -> int:
    return max(1, min(4, segment_frames // 4))


def _valid_length(n: int, stride: int, lo: int, hi: int) -> int:
    """Smallest `stride*m + 1` frame count >= n within [lo, hi]."""
    m = max(0, -(-(max(n, lo) - 1) // stride))
    return min(hi, stride * m + 1)


def plan_segments(
    total_frames: int,
    *,
    segment_frames: int,
    overlap: int,
    temporal_stride: int,
    min_frames: int,
    first: int | None = None,
    first_overlap: int | None = None,
) -> SegmentPlan:
    """Cut `total_frames` into segments of `segment_frames` sharing `overlap` frames.

    `first` fixes segment 0's length (an extension's source video, joined with `first_overlap`
    frames). The last segment is shortened to the smallest valid length that covers the rest
    (its extra frames, if any, are dropped), which saves denoising work.
    """
    if total_frames < 1:
        raise ValueError(f"total_frames must be >= 1, got {total_frames}")
    if not 0 < overlap < segment_frames - 1:
        raise ValueError(f"overlap must be in [1, {segment_frames - 2}], got {overlap}")
    if first is None and total_frames <= segment_frames:
        n = _valid_length(total_frames, temporal_stride, min_frames, segment_frames)
        return SegmentPlan(total_frames, (n,), (0,))
    lengths = [segment_frames if first is None else first]
    overlaps = [0]
    covered = lengths[0]
    while covered < total_frames:
        o = first_overlap if first_overlap is not None and len(lengths) == 1 else overlap
        need = total_frames - covered + o
        n = _valid_length(need, temporal_stride, max(min_frames, o + 2), segment_frames)
        lengths.append(n)
        overlaps.append(o)
        covered += n - o
    return SegmentPlan(total_frames, tuple(lengths), tuple(overlaps))


def segment_seed(seed: int, k: int) -> int:
    """Seed of segment k: the request seed for k = 0, else a hash of (seed, k) in [0, 2**63)."""
    if k == 0:
        return seed
    digest = hashlib.sha256(f"wanserve-segment:{seed}:{k}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def check_long_video_support(preset: Any) -> None:
    """Raise ValueError when the model cannot condition on an image (T2V-only models)."""
    if preset.image_input == "none":
        raise ValueError(
            f"long videos need a model with an image mode (I2V or TI2V); {preset.model_id!r} "
            f"(task {preset.task}) is text-to-video only and is limited to {preset.max_num_frames} frames"
        )


def to_uint8(video: torch.Tensor) -> Frames:
    """[3, F, H, W] float in [-1, 1] -> [F, H, W, 3] uint8."""
    x = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    out: Frames = x.permute(1, 2, 3, 0).contiguous().numpy()
    return out


def frame_to_tensor(frame: Frames) -> torch.Tensor:
    """[H, W, 3] uint8 -> [3, H, W] float32 in [-1, 1] (the pipeline's image tensor form)."""
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def match_colour(
    segment: NDArray[np.float32], new_ref: NDArray[np.float32], old_ref: NDArray[np.float32]
) -> NDArray[np.float32]:
    """Map each channel of `segment` so that `new_ref`'s mean/std become `old_ref`'s.

    All arrays are float [F, H, W, 3] in [0, 255]; the refs are the overlapping frames.
    """
    mu_new, mu_old = new_ref.mean(axis=(0, 1, 2)), old_ref.mean(axis=(0, 1, 2))
    sd_new, sd_old = new_ref.std(axis=(0, 1, 2)), old_ref.std(axis=(0, 1, 2))
    gain = np.clip(sd_old / np.maximum(sd_new, 1e-3), 0.5, 2.0)
    out: NDArray[np.float32] = ((segment - mu_new) * gain + mu_old).astype(np.float32)
    return out


def finish_segment(raw: torch.Tensor, previous: Frames | None, overlap: int) -> Frames:
    """A generated segment ([3, F, H, W] in [-1, 1]) -> colour-matched uint8 frames."""
    frames = to_uint8(raw)
    if previous is None:
        return frames
    seg = frames.astype(np.float32)
    seg = match_colour(seg, seg[:overlap], previous[-overlap:].astype(np.float32))
    out: Frames = np.clip(np.round(seg), 0, 255).astype(np.uint8)
    return out


def join_segments(
    segments: Sequence[Frames],
    overlaps: Sequence[int],
    total_frames: int | None = None,
    *,
    keep_first: bool = False,
) -> Frames:
    """Cross-fade consecutive finished segments over their overlaps -> [F, H, W, 3] uint8.

    `keep_first`: segment 0 (an extension's source) is kept unchanged; segment 1 only adds the
    frames after its overlap.
    """
    if not segments:
        raise ValueError("no segments to join")
    parts: list[Frames] = [segments[0]]
    for k, seg in enumerate(segments[1:], start=1):
        o = overlaps[k]
        if k == 1 and keep_first:
            parts.append(seg[o:])
            continue
        w = (np.arange(1, o + 1, dtype=np.float32) / (o + 1))[:, None, None, None]
        prev = parts[-1]
        tail = prev[-o:].astype(np.float32)
        blend = np.round(tail * (1 - w) + seg[:o].astype(np.float32) * w).astype(np.uint8)
        parts[-1] = prev[:-o]
        parts.extend([blend, seg[o:]])
    video = np.concatenate(parts, axis=0)
    return video if total_frames is None else video[:total_frames]


def generate_long_video(
    pipe: Any,
    prompt: str,
    *,
    total_frames: int,
    seed: int,
    image: Any = None,
    segment_frames: int | None = None,
    overlap: int | None = None,
    finished: Sequence[Frames] = (),
    on_segment: SegmentCallback | None = None,
    callback: StepCallback | None = None,
    source: Frames | None = None,
    **generate_kwargs: Any,
) -> Frames:
    """Generate `total_frames` frames as chained segments -> [F, H, W, 3] uint8.

    Args:
        pipe: a `WanPipeline` whose preset has an image mode.
        image: conditions the first segment (required by I2V models), as in `generate`.
        segment_frames: frames per segment (default: the preset's `max_num_frames`).
        finished: segments finished by an earlier run (resume), in order; not regenerated.
        on_segment(k, frames): called with each newly finished segment (store it to resume).
        callback(step, total, timestep): progress over all segments to generate (the steps of
            resumed segments count as done).
        source: an existing video to extend ([F, H, W, 3] uint8). It plays first, reproduced
            unchanged; the first new segment starts from its last frame. `total_frames` counts it.
        generate_kwargs: height, width, num_steps, guidance_scale, shift, sampler, negative_prompt.
    """
    plan = plan_for(
        pipe.preset, total_frames, segment_frames, overlap, None if source is None else len(source)
    )
    steps = int(generate_kwargs.get("num_steps") or pipe.preset.default_num_steps)
    first_new = 0 if source is None else 1
    total_steps = steps * (plan.count - first_new)
    segs: list[Frames] = list(finished)
    if source is not None and not segs:
        segs = [source]
    for k in range(len(segs), plan.count):
        base = steps * (k - first_new)

        def step_cb(i: int, n: int, t: float, _base: int = base) -> None:
            if callback is not None:
                callback(_base + i, total_steps, t)

        o = plan.overlaps[k]
        cond = image if k == 0 else frame_to_tensor(segs[k - 1][len(segs[k - 1]) - o])
        raw = pipe.generate(
            prompt,
            image=cond,
            num_frames=plan.lengths[k],
            seed=segment_seed(seed, k),
            callback=step_cb,
            **generate_kwargs,
        )
        seg = finish_segment(raw, segs[k - 1] if k else None, o)
        segs.append(seg)
        if on_segment is not None:
            on_segment(k, seg)
    return join_segments(segs, plan.overlaps, plan.total_frames, keep_first=source is not None)


def plan_for(
    preset: Any,
    total_frames: int,
    segment_frames: int | None = None,
    overlap: int | None = None,
    source_frames: int | None = None,
) -> SegmentPlan:
    """The segment plan `generate_long_video` follows (also what a service reports up front).

    Raises ValueError for T2V-only models and for an extension that adds nothing.
    """
    check_long_video_support(preset)
    seg_len = segment_frames or preset.max_num_frames
    o = overlap if overlap is not None else default_overlap(seg_len)
    kw: dict[str, Any] = dict(
        segment_frames=seg_len,
        overlap=o,
        temporal_stride=preset.vae_stride[0],
        min_frames=preset.min_num_frames,
    )
    if source_frames is None:
        return plan_segments(total_frames, **kw)
    if total_frames <= source_frames:
        raise ValueError(f"total_frames ({total_frames}) must exceed the source's {source_frames} frames")
    # the source's last frame is the new segment's frame 0 (its image): a one-frame seam, no blend
    return plan_segments(total_frames, first=source_frames, first_overlap=1, **kw)
