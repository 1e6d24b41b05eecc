"""MP4 encoding (worker/encode.py): exact frames, size, rate and codec; same frames, same MP4.

libx264 with several threads made timing-dependent macroblock decisions, so one seed decoded to
different videos (a whole 16x16 macroblock off by up to 24/255). The frames come from the demo
model, where the effect was seen."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from model import load_pipeline
from worker.encode import encode_mp4


def test_encoding_the_same_frames_gives_the_same_file(tmp_path: Path) -> None:
    pipe = load_pipeline("wanserve-demo", device="cpu")
    digests: dict[tuple[str, int], set[str]] = {}
    for prompt, seed in [("a red fox running in snow", 5), ("a blue boat on a lake", 9), ("a cat", 1)]:
        video = pipe.generate(prompt, height=32, width=32, num_frames=9, num_steps=20, seed=seed)
        frames = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
        for i in range(8):
            out = tmp_path / f"{seed}-{i}.mp4"
            encode_mp4(frames, out, fps=8)
            digests.setdefault((prompt, seed), set()).add(hashlib.sha256(out.read_bytes()).hexdigest())
            with av.open(str(out)) as c:  # decoding in between is what made encodes differ
                for _ in c.decode(c.streams.video[0]):
                    pass
    assert all(len(d) == 1 for d in digests.values()), digests


def test_encode_exact_frames(tmp_path: Path) -> None:
    frames = (np.random.default_rng(0).random((13, 32, 64, 3)) * 255).astype(np.uint8)
    encode_mp4(frames, tmp_path / "v.mp4", fps=16)
    with av.open(str(tmp_path / "v.mp4")) as c:
        s = c.streams.video[0]
        decoded = list(c.decode(s))
        assert len(decoded) == 13 and (decoded[0].width, decoded[0].height) == (64, 32)
        assert float(s.average_rate) == 16 and s.codec_context.name == "h264"
        assert decoded[0].format.name == "yuv420p"
    with pytest.raises(ValueError):
        encode_mp4(frames[:, :31], tmp_path / "odd.mp4", fps=16)
