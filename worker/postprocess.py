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


def apply_output(frames: Frames, p: ResolvedParams) -> tuple[Frames, int]:
    """-> (frames to encode, their fps) after the requested upscale and frame-rate conversion."""
    if p.output_width and p.output_height:
        frames = upscale(frames, p.output_width, p.output_height)
    if p.output_fps and p.output_fps > p.fps:
        return interpolate(frames, p.fps, p.output_fps), p.output_fps
    return frames, p.fps


def refine(rt: Any, rec: JobRecord, frames: Frames) -> Frames:
    """Upscale, then a low-strength edit pass of the model at the target size (one clip)."""
    import torch

    from model.long_video import to_uint8
    from model.video_edit import edit_video

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
