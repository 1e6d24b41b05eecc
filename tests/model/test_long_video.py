"""Long videos: segment plans, seeds, seams, colour match, resume and extension (model level)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch

from model import load_pipeline
from model.long_video import (
    generate_long_video,
    join_segments,
    match_colour,
    plan_for,
    plan_segments,
    segment_seed,
)
from model.presets import get_preset


@cache
def pipe(name: str):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return load_pipeline(name)


def _diffs(v: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(v.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))


def test_plan_covers_the_length_with_valid_segments() -> None:
    p = get_preset("wanserve-demo")
    for total in (17, 18, 40, 80, 333):
        plan = plan_for(p, total)
        assert sum(plan.new_frames(k) for k in range(plan.count)) >= total
        assert sum(plan.new_frames(k) for k in range(plan.count - 1)) < total
        for n in plan.lengths:
            assert (n - 1) % p.vae_stride[0] == 0 and p.min_num_frames <= n <= p.max_num_frames
    assert plan_for(p, 9).lengths == (9,)
    assert plan_for(p, 80).count == 6
    with pytest.raises(ValueError, match="overlap"):
        plan_segments(40, segment_frames=17, overlap=16, temporal_stride=2, min_frames=5)


def test_t2v_only_models_are_refused() -> None:
    with pytest.raises(ValueError, match="image mode"):
        plan_for(get_preset("tiny-t2v-a14b"), 40)
    with pytest.raises(ValueError, match="image mode"):
        generate_long_video(pipe("tiny-t2v-a14b"), "x", total_frames=40, seed=1, num_steps=1)


def test_segment_seeds_are_derived_and_distinct() -> None:
    seeds = [segment_seed(7, k) for k in range(50)]
    assert seeds[0] == 7 and len(set(seeds)) == 50 and all(0 <= s < 2**63 for s in seeds)
    assert seeds == [segment_seed(7, k) for k in range(50)]
    assert segment_seed(8, 1) != seeds[1]


def test_colour_match_moves_the_overlap_statistics() -> None:
    rng = np.random.default_rng(0)
    old = rng.uniform(50, 150, (3, 8, 8, 3)).astype(np.float32)
    new = old * 1.3 + 20  # drifted brighter and contrastier
    out = match_colour(new, new, old)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), old.mean(axis=(0, 1, 2)), atol=1e-3)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), old.std(axis=(0, 1, 2)), rtol=1e-4)


def test_join_cross_fades_the_overlap() -> None:
    a = np.full((6, 2, 2, 3), 100, np.uint8)
    b = np.full((6, 2, 2, 3), 200, np.uint8)
    v = join_segments([a, b], (0, 3))
    assert len(v) == 9
    assert [int(f[0, 0, 0]) for f in v[2:7]] == [100, 125, 150, 175, 200]
    kept = join_segments([a, b], (0, 1), keep_first=True)
    assert len(kept) == 11 and (kept[:6] == a).all() and (kept[6:] == 200).all()


def test_demo_long_video_is_deterministic_and_seamless() -> None:
    p = pipe("wanserve-demo")
    kw = dict(total_frames=80, num_steps=8, height=32, width=32)
    v = generate_long_video(p, "a red ball bouncing", seed=3, **kw)
    assert v.shape == (80, 32, 32, 3) and v.dtype == np.uint8
    again = generate_long_video(p, "a red ball bouncing", seed=3, **kw)
    assert np.array_equal(v, again)
    other = generate_long_video(p, "a red ball bouncing", seed=4, **kw)
    assert not np.array_equal(v, other)
    # seams: the frame-to-frame change across a junction is no larger than inside a segment
    plan = plan_for(p.preset, 80)
    d = _diffs(v)
    starts = np.cumsum([plan.new_frames(k) for k in range(plan.count)])[:-1]
    seam = [d[s - plan.overlaps[1] - 1 : s + 1].max() for s in starts]
    inside = np.median(d)
    assert max(seam) < 3 * inside + 2, (seam, inside)
    # colour: no junction shifts the mean colour more than a step inside a segment does
    means = v.astype(np.float32).mean(axis=(1, 2))  # [F, 3]
    jumps = np.abs(np.diff(means, axis=0)).max(axis=1)
    assert max(jumps[s - 1 : s + 1].max() for s in starts) < 3 * np.median(jumps) + 3, jumps


def test_resume_from_finished_segments_gives_the_same_video() -> None:
    p = pipe("wanserve-demo")
    kw = dict(total_frames=60, num_steps=4, seed=11)
    stored: list[np.ndarray] = []
    full = generate_long_video(p, "a blue square", on_segment=lambda k, f: stored.append(f), **kw)
    assert len(stored) == plan_for(p.preset, 60).count >= 4
    steps: list[tuple[int, int]] = []
    resumed = generate_long_video(
        p, "a blue square", finished=stored[:2], callback=lambda i, n, t: steps.append((i, n)), **kw
    )
    assert np.array_equal(full, resumed)
    total = 4 * len(stored)
    assert steps[0] == (9, total) and steps[-1] == (total, total)  # the first 2 segments count as done


@pytest.mark.parametrize("name", ["tiny-ti2v", "tiny-i2v-a14b"])
def test_tiny_image_mode_models_chain_segments(name: str) -> None:
    p = pipe(name)
    image = torch.zeros(3, 32, 32)
    v = generate_long_video(p, "x", total_frames=40, seed=1, num_steps=2, image=image)
    assert v.shape == (40, 32, 32, 3)


def test_extension_reproduces_the_source_frames() -> None:
    p = pipe("wanserve-demo")
    src = generate_long_video(p, "a green circle", total_frames=17, seed=5, num_steps=4)
    out = generate_long_video(p, "a green circle moves", total_frames=40, seed=6, num_steps=4, source=src)
    assert out.shape[0] == 40 and np.array_equal(out[:17], src)
    # the first new frame continues from the source's last one
    assert _diffs(out)[16] < 3 * np.median(_diffs(out)) + 2
    with pytest.raises(ValueError, match="exceed"):
        generate_long_video(p, "x", total_frames=17, seed=6, num_steps=1, source=src)
