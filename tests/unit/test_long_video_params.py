"""Long-video resolution at the gateway, and its agreement with the model's segment plan."""

from __future__ import annotations

import dataclasses

import pytest

from app.core.errors import InvalidInput
from app.core.long_video import apply_long_video, segment_count
from app.core.params import resolve
from app.core.schemas import ModelInfo, VideoCreate
from model.long_video import plan_for
from model.presets import PRESETS

INFO = {name: ModelInfo.model_validate(dataclasses.asdict(p)) for name, p in PRESETS.items()}


def long(req: VideoCreate, info: ModelInfo, max_s: float = 60.0):  # type: ignore[no-untyped-def]
    return apply_long_video(req, info, resolve(req, info, has_image=False), max_video_seconds=max_s)


@pytest.mark.parametrize("name", ["wanserve-demo", "tiny-ti2v", "wan2.2-ti2v-5b", "wan2.2-i2v-a14b"])
@pytest.mark.parametrize("frames", [5, 17, 18, 81, 121, 122, 500, 1441])
def test_segment_count_matches_the_model_plan(name: str, frames: int) -> None:
    preset = PRESETS[name]
    assert segment_count(frames, preset.max_num_frames) == plan_for(preset, frames).count
    src = preset.max_num_frames
    if frames > src:
        assert segment_count(frames, preset.max_num_frames, source_frames=src) == (
            plan_for(preset, frames, source_frames=src).count - 1
        )


def test_long_seconds_become_segments() -> None:
    p = long(VideoCreate(prompt="x", seconds="10"), INFO["wanserve-demo"])
    assert (p.num_frames, p.segments, p.fps) == (81, 6, 8)
    short = long(VideoCreate(prompt="x", seconds="1"), INFO["wanserve-demo"])
    assert (short.num_frames, short.segments) == (9, 1)
    # num_frames stays bound to one segment
    with pytest.raises(InvalidInput):
        long(VideoCreate(prompt="x", num_frames=81), INFO["wanserve-demo"])


def test_text_only_models_and_the_bound_are_refused() -> None:
    with pytest.raises(InvalidInput) as exc:
        long(VideoCreate(prompt="x", seconds="12"), INFO["wan2.2-t2v-a14b"])
    assert exc.value.errors[0].field == "seconds" and "image" in exc.value.errors[0].reason
    assert long(VideoCreate(prompt="x", seconds="5"), INFO["wan2.2-t2v-a14b"]).segments == 1
    with pytest.raises(InvalidInput, match="MAX_VIDEO_SECONDS"):
        long(VideoCreate(prompt="x", seconds="30"), INFO["wanserve-demo"], max_s=20)
