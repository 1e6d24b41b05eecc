"""Video-to-video edits at the model level: strength, steps, experts, determinism."""

from __future__ import annotations

import pytest
import torch

from model import load_pipeline
from model.presets import get_preset
from model.video_edit import edit_video, valid_edit_frames


def test_strength_sets_the_steps_and_how_far_the_result_moves() -> None:
    torch.manual_seed(0)
    p = load_pipeline("wanserve-demo")
    src = p.generate("a red ball", num_steps=8, seed=1)
    dist = []
    for s in (0.2, 0.6, 1.0):
        steps: list[tuple[int, int]] = []
        out = edit_video(
            p,
            "a blue square",
            src,
            strength=s,
            seed=2,
            num_steps=10,
            callback=lambda i, n, t: steps.append((i, n)),
        )
        assert out.shape == src.shape and steps[-1] == (round(10 * s), round(10 * s))
        dist.append(float((out - src).abs().mean()))
    assert dist[0] < dist[1] < dist[2], dist
    again = edit_video(p, "a blue square", src, strength=0.6, seed=2, num_steps=10)
    assert torch.equal(again, edit_video(p, "a blue square", src, strength=0.6, seed=2, num_steps=10))
    with pytest.raises(ValueError, match="strength"):
        edit_video(p, "x", src, strength=0.0, seed=2)


def test_low_strength_runs_only_the_low_noise_expert() -> None:
    p = load_pipeline("tiny-i2v-a14b")
    src = torch.rand(3, 5, 32, 32) * 2 - 1
    ts: list[float] = []
    edit_video(p, "x", src, strength=0.3, seed=1, num_steps=10, callback=lambda i, n, t: ts.append(t))
    assert ts and max(ts) < p.preset.boundary * 1000  # all steps below the switch


def test_valid_edit_frames() -> None:
    demo = get_preset("wanserve-demo")
    assert [valid_edit_frames(demo, n) for n in (5, 6, 9, 10, 17, 100)] == [5, 5, 9, 9, 17, 17]
    with pytest.raises(ValueError, match="at least"):
        valid_edit_frames(demo, 4)
