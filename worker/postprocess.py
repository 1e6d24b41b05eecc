"""Output post-processing: upscaling (Lanczos) and frame-rate conversion (motion-compensated
interpolation), applied to the generated uint8 frames before MP4 encoding.

* `size` above the model's native sizes: each frame is resized with PIL's Lanczos filter (the
  gateway allows up to 2x per side at the same aspect ratio).
* `fps` above the model's rate: FFmpeg's `minterpolate` filter (through PyAV's filter graph) in
  motion-compensated mode (`mi_mode=mci`, overlapped-block compensation, bidirectional motion
  estimation) synthesises the in-between frames; nothing is duplicated. The output spans the same
  instants as the input: `floor((F - 1) * out_fps / fps) + 1` frames, the first and last equal to
  the generated first and last (the input is padded with copies of the last frame so the filter,
  which needs a frame of lookahead, emits up to it).
* With `WANSERVE_INTERPOLATOR_WEIGHTS` the worker has a learned RIFE interpolator
  (`model.interpolator`) and uses it instead (`parameters.interpolation == "rife"`): output frame
  ``j`` lies at source position ``s = j * fps / out_fps``; a whole ``s`` is that generated frame as
  is, otherwise the network synthesises the frame at ``t = s - floor(s)`` between its two
  neighbours. Same count and instants as above, for whole and fractional ratios alike; one frame
  at a time, so memory stays at one frame pair whatever the length.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.core.schemas import JobRecord, ResolvedParams

Frames = NDArray[np.uint8]
MINTERPOLATE = "mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1"


def interpolated_count(frames: int, fps: int, out_fps: int) -> int:
    return (frames - 1) * out_fps // fps + 1


def upscale(frames: Frames, width: int, height: int) -> Frames:
    from PIL import Image

    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.LANCZOS)) for f in frames]
    )


def interpolate(frames: Frames, fps: int, out_fps: int) -> Frames:
    """Motion-compensated frame-rate conversion of [F, H, W, 3] uint8 frames from fps to out_fps."""
    import av

    n, h, w, _ = frames.shape
    want = interpolated_count(n, fps, out_fps)
    if n < 2 or out_fps <= fps:
        return frames
    graph = av.filter.Graph()
    src = graph.add_buffer(width=w, height=h, format=av.VideoFormat("rgb24"), time_base=Fraction(1, fps))
    to_yuv = graph.add("format", "yuv444p")  # minterpolate works on planar YUV; 4:4:4 keeps chroma
    mi = graph.add("minterpolate", f"fps={out_fps}:{MINTERPOLATE}")
    sink = graph.add("buffersink")
    src.link_to(to_yuv)
    to_yuv.link_to(mi)
    mi.link_to(sink)
    graph.configure()
    out: list[Frames] = []

    def drain() -> None:
        while len(out) < want:
            try:
                frame = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            assert isinstance(frame, av.VideoFrame)
            out.append(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))

    padded = [*frames, frames[-1], frames[-1]]
    for i, arr in enumerate(padded):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
        vf.pts = i
        vf.time_base = Fraction(1, fps)
        graph.push(vf)
        drain()
    graph.push(None)
    drain()
    out = out[:want]
    out[-1] = frames[-1]  # the generated last frame, not its re-sampled YUV round trip
    out[0] = frames[0]
    return np.stack(out)


def source_positions(frames: int, fps: int, out_fps: int) -> list[tuple[int, Fraction]]:
    """(i, t) per output frame: it lies at ``t`` in [0, 1) between generated frames i and i + 1."""
    out = []
    for j in range(interpolated_count(frames, fps, out_fps)):
        s = Fraction(j * fps, out_fps)
        i = s.numerator // s.denominator
        out.append((i, s - i))
    return out


def interpolate_learned(frames: Frames, fps: int, out_fps: int, interpolator: Any) -> Frames:
    """Frame-rate conversion with a learned interpolator (`model.interpolator.RifeInterpolator`)."""
    import torch

    if len(frames) < 2 or out_fps <= fps:
        return frames
    src = torch.from_numpy(np.ascontiguousarray(frames))
    out = np.empty((interpolated_count(len(frames), fps, out_fps), *frames.shape[1:]), np.uint8)
    for j, (i, t) in enumerate(source_positions(len(frames), fps, out_fps)):
        out[j] = frames[i] if t == 0 else interpolator.between(src[i], src[i + 1], float(t)).numpy()
    return out


def apply_output(frames: Frames, p: ResolvedParams, interpolator: Any = None) -> tuple[Frames, int]:
    """-> (frames to encode, their fps) after the requested upscale and frame-rate conversion.

    ``interpolator``: the worker's learned one, used when the job's parameters name it.
    """
    if p.output_width and p.output_height:
        frames = upscale(frames, p.output_width, p.output_height)
    if p.output_fps and p.output_fps > p.fps:
        if p.interpolation == "rife" and interpolator is not None:
            return interpolate_learned(frames, p.fps, p.output_fps, interpolator), p.output_fps
        return interpolate(frames, p.fps, p.output_fps), p.output_fps
    return frames, p.fps


def refine(rt: Any, rec: JobRecord, frames: Frames) -> Frames:
    """Upscale, then a low-strength edit pass of the model at the target size (one clip)."""
    import torch

    from model.long_video import to_uint8
    from worker.group_link import edit_video

    p = rec.params
    assert p.output_width and p.output_height and p.refine_strength
    up = upscale(frames, p.output_width, p.output_height)
    video = torch.from_numpy(up).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)
    out = edit_video(
        rt.pipe,
        rec.revised_prompt or rec.prompt,
        video,
        strength=p.refine_strength,
        seed=p.seed,
        negative_prompt=p.negative_prompt,
        num_steps=p.num_inference_steps,
        guidance_scale=tuple(p.guidance_scale),
        shift=p.shift,
        sampler=p.sampler,
    )
    return to_uint8(out)
