"""Video encoding: frames → H.264 MP4 (yuv420p, constant fps, faststart) and a first-frame thumbnail.

Takes a uint8 array ``[F, H, W, 3]`` (the worker converts the model's ``[3, F, H, W]`` tensor in
[-1, 1]); PyAV (FFmpeg's libx264) writes the file. Every frame gets ``pts = i`` in a ``1/fps`` time
base, so a standard decoder returns exactly ``F`` frames of ``W x H`` at ``fps``. Encoding is
single-threaded so that equal frames always give an equal file (the "same seed, same video" promise).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray
from PIL import Image

THUMBNAIL_FORMAT = "WEBP"


def encode_mp4(frames: NDArray[np.uint8], path: Path, *, fps: int, crf: int = 18) -> None:
    """Write ``frames`` ([F, H, W, 3] uint8 RGB) as an MP4 that starts playing before it has loaded."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected [F, H, W, 3] uint8 frames, got {frames.shape} {frames.dtype}")
    n, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs even width and height, got {w}x{h}")
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        # Same frames, same file. Multi-threaded libx264 makes timing-dependent decisions, and even
        # with one thread its lookahead / macroblock-tree rate control gave different bitstreams for
        # equal frames once decodes ran in between (4-5 distinct files in 8 encodes, PyAV 18.1):
        # one thread, no lookahead, no mbtree gave 1 of 8. The cost is a few percent of bitrate.
        opts = {
            "crf": str(crf),
            "preset": "medium",
            "threads": "1",
            "x264-params": "threads=1:rc-lookahead=0:mbtree=0",
        }
        stream = container.add_stream("libx264", rate=fps, options=opts)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_thumbnail(frame: NDArray[np.uint8], path: Path, *, quality: int = 85) -> None:
    """The first frame as a WebP image (OpenAI's `variant=thumbnail`)."""
    Image.fromarray(frame).save(path, format=THUMBNAIL_FORMAT, quality=quality)
