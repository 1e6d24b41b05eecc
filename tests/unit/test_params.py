"""Request resolution against a published model preset (pure Python)."""

from __future__ import annotations

import pytest

from app.core.errors import InvalidInput
from app.core.params import resolve, seconds_str, seconds_to_frames
from app.core.schemas import ModelInfo, VideoCreate

ONE = ModelInfo(
    model_id="m1",
    task="ti2v",
    image_input="optional",
    sizes=[(32, 32), (64, 32)],
    default_size=(32, 32),
    default_num_frames=5,
    min_num_frames=1,
    max_num_frames=17,
    fps=16,
    default_num_steps=4,
    max_num_steps=50,
    default_shift=5.0,
    default_guidance_scale=[5.0],
    boundary=None,
)
TWO = ONE.model_copy(
    update={"model_id": "m2", "default_guidance_scale": [3.0, 4.0], "boundary": 0.875, "image_input": "none"}
)
I2V = ONE.model_copy(update={"model_id": "m3", "image_input": "required"})


def fields(exc: pytest.ExceptionInfo[InvalidInput]) -> set[str]:
    return {e.field for e in exc.value.errors}


def test_defaults_and_random_seed() -> None:
    p = resolve(VideoCreate(prompt="x"), ONE, has_image=False)
    assert (p.width, p.height, p.num_frames, p.fps, p.num_inference_steps) == (32, 32, 5, 16, 4)
    assert p.guidance_scale == [5.0] and p.shift == 5.0 and p.sampler == "unipc" and 0 <= p.seed < 2**31


@pytest.mark.parametrize(("seconds", "frames"), [(1, 17), ("0.5", 9), (0.1, 1), (0.2, 5), ("0.01", 1)])
def test_seconds_map_to_4n_plus_1_frames(seconds: float | str, frames: int) -> None:
    p = resolve(VideoCreate(prompt="x", seconds=seconds), ONE, has_image=False)
    assert p.num_frames == frames and (p.num_frames - 1) % 4 == 0


@pytest.mark.parametrize("seconds", [4, "8", 1.3])
def test_seconds_the_model_cannot_make_are_a_400_not_a_clamp(seconds: float | str) -> None:
    text_only = ONE.model_copy(update={"image_input": "none"})  # with an image mode: a long video
    with pytest.raises(InvalidInput) as exc:
        resolve(VideoCreate(prompt="x", seconds=seconds), text_only, has_image=False)
    assert fields(exc) == {"seconds"} and exc.value.status == 400
    assert "1-17 frames" in exc.value.errors[0].reason


def test_seconds_to_frames_formula() -> None:
    assert seconds_to_frames(5, 16, 1, 81) == 81
    assert seconds_to_frames(2, 24, 1, 121) == 49
    with pytest.raises(InvalidInput):
        seconds_to_frames(100, 16, 5, 81)
    with pytest.raises(InvalidInput):
        seconds_to_frames(0.01, 16, 5, 81)


def test_seconds_in_answers_is_a_short_decimal_string() -> None:
    assert [seconds_str(n, fps) for n, fps in [(81, 16), (121, 24), (9, 24), (96, 24)]] == [
        "5.06",
        "5.04",
        "0.38",
        "4",
    ]


def test_guidance_two_experts() -> None:
    p = resolve(VideoCreate(prompt="x"), TWO, has_image=False)
    assert p.guidance_scale == [3.0, 4.0]  # [low_noise, high_noise]
    p = resolve(VideoCreate(prompt="x", guidance_scale=6, guidance_scale_high_noise=7), TWO, has_image=False)
    assert p.guidance_scale == [6.0, 7.0]
    p = resolve(VideoCreate(prompt="x", guidance_scale_low_noise=2), TWO, has_image=False)
    assert p.guidance_scale == [2.0, 4.0]


def test_every_bad_field_is_reported_at_once() -> None:
    req = VideoCreate(
        prompt="x",
        size="16x16",
        num_frames=4,
        num_inference_steps=60,
        sampler="euler",
        guidance_scale_low_noise=1.0,
    )
    with pytest.raises(InvalidInput) as exc:
        resolve(req, ONE, has_image=False)
    assert fields(exc) == {"size", "num_frames", "num_inference_steps", "guidance_scale_low_noise"}


def test_image_rules() -> None:
    with pytest.raises(InvalidInput) as exc:
        resolve(VideoCreate(prompt="x"), I2V, has_image=False)
    assert fields(exc) == {"input_reference"}
    with pytest.raises(InvalidInput):
        resolve(VideoCreate(prompt="x"), TWO, has_image=True)
    assert resolve(VideoCreate(prompt="x"), ONE, has_image=True).has_image
