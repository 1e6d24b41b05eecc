"""Check client-uploaded source videos (extend / edit) before they reach a worker, like images.

Checks, in order, each failure an `InvalidInput` on the form field (→ 400): size in bytes; the
container (sniffed by FFmpeg from the content, never from the name) is one of MP4/MOV, WebM/MKV;
it has a video stream whose codec is allowed; the frame size is within ``max_pixels`` *before*
any frame is decoded; the duration is within ``max_seconds``; every frame decodes (truncated or
corrupt files). Returns the frame count and size, which the request's parameters follow.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from app.core.errors import FieldError, InvalidInput

CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4"})


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    width: int
    height: int
    fps: float


def _bad(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}", errors=[FieldError(field, reason)])


def probe_video(
    data: bytes, *, max_bytes: int, max_pixels: int, max_seconds: float, field: str = "video"
) -> VideoInfo:
    import av  # PyAV (FFmpeg); imported here so that importing the gateway stays cheap

    if not data:
        raise _bad(field, "the file is empty")
    if len(data) > max_bytes:
        raise _bad(field, f"the file is larger than {max_bytes} bytes")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise _bad(field, "not a recognised video file") from exc
    with container:
        if container.format.name not in CONTAINERS:
            raise _bad(field, f"container {container.format.name} is not allowed (MP4, MOV, WebM, MKV)")
        if not container.streams.video:
            raise _bad(field, "the file has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec not in CODECS:
            raise _bad(field, f"video codec {codec} is not allowed (allowed: {', '.join(sorted(CODECS))})")
        w, h = stream.codec_context.width, stream.codec_context.height
        if w <= 0 or h <= 0 or w * h > max_pixels:
            raise _bad(field, f"the video is {w}x{h}; at most {max_pixels} pixels")
        rate = float(stream.average_rate or stream.guessed_rate or 0) or 24.0
        if stream.duration is not None and stream.time_base is not None:
            if float(stream.duration * stream.time_base) > max_seconds:
                raise _bad(field, f"the video is longer than {max_seconds:g} s")
        frames = 0
        try:
            for _ in container.decode(stream):
                frames += 1
                if frames / rate > max_seconds:
                    raise _bad(field, f"the video is longer than {max_seconds:g} s")
        except av.error.FFmpegError as exc:
            raise _bad(field, "the video is corrupt or truncated") from exc
        if frames == 0:
            raise _bad(field, "the video has no frames")
    return VideoInfo(frames=frames, width=w, height=h, fps=rate)
