"""Output post-processing: motion-compensated frame-rate conversion and Lanczos upscaling."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.output import apply_output, output_frames, split_size, upscale_base, upscale_sizes
from app.core.params import resolve
from app.core.schemas import ModelInfo, VideoCreate
from worker.postprocess import interpolate, interpolated_count, upscale

INFO = ModelInfo(
    model_id="m",
    task="ti2v",
    image_input="optional",
    sizes=[(32, 32), (48, 32)],
    default_size=(32, 32),
    default_num_frames=9,
    min_num_frames=5,
    max_num_frames=17,
    fps=8,
    default_num_steps=4,
    max_num_steps=50,
    default_shift=2.0,
    default_guidance_scale=[3.0],
)


def moving(n: int = 9, size: int = 32) -> np.ndarray:
    x = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        x[i, 8:16, 2 * i : 2 * i + 8] = (230, 60, 20)
    return x


@pytest.mark.parametrize(("fps", "out"), [(8, 16), (8, 24), (8, 30), (24, 30)])
def test_interpolation_count_and_no_duplicates(fps: int, out: int) -> None:
    x = moving()
    y = interpolate(x, fps, out)
    assert len(y) == interpolated_count(9, fps, out) == (9 - 1) * out // fps + 1
    assert np.array_equal(y[0], x[0]) and np.array_equal(y[-1], x[-1])
    diffs = np.abs(np.diff(y.astype(np.int16), axis=0)).reshape(len(y) - 1, -1).max(axis=1)
    assert (diffs > 0).all()  # no frame repeats its neighbour
    if out == 2 * fps:  # the in-between frame is synthesised, not a copy of either side
        assert not np.array_equal(y[1], x[0]) and not np.array_equal(y[1], x[1])


def test_lanczos_upscale() -> None:
    y = upscale(moving(3), 64, 64)
    assert y.shape == (3, 64, 64, 3) and y.dtype == np.uint8
    assert abs(float(y.mean()) - float(moving(3).mean())) < 2


def test_gateway_output_resolution() -> None:
    assert upscale_base((64, 64), [(32, 32), (48, 32)]) == (32, 32)
    assert upscale_base((96, 64), [(32, 32), (48, 32)]) == (48, 32)
    assert upscale_base((66, 64), [(32, 32)]) is None and upscale_base((128, 128), [(32, 32)]) is None
    assert upscale_base((100, 100), [(64, 64)]) is None  # 1.5625x: not a listed size
    assert upscale_sizes([(32, 32), (48, 32)]) == ["48x48", "64x64", "72x48", "96x64"]
    req, out = split_size(VideoCreate(prompt="x", size="64x64", fps=24, seconds="1"), INFO)
    p = apply_output(req, INFO, resolve(req, INFO, has_image=False), out)
    assert (p.width, p.height, p.output_width, p.output_height, p.upscaler) == (32, 32, 64, 64, "lanczos")
    assert (p.fps, p.output_fps, p.interpolation, p.num_frames) == (8, 24, "minterpolate", 9)
    assert output_frames(p) == 25
    same = apply_output(
        VideoCreate(prompt="x", fps=4),
        INFO,
        resolve(VideoCreate(prompt="x", fps=4), INFO, has_image=False),
        None,
    )
    assert same.output_fps is None and same.fps == 4


def test_upscale_refine_needs_an_upscaled_refinable_size() -> None:
    from app.core.errors import InvalidInput
    from app.core.long_video import apply_long_video

    info = INFO.model_copy(update={"vae_stride": (4, 16, 16)})  # refinable sides: multiples of 32

    def run(**kw: object):  # type: ignore[no-untyped-def]
        req, out = split_size(VideoCreate(prompt="x", **kw), info)  # type: ignore[arg-type]
        p = apply_output(req, info, resolve(req, info, has_image=False), out)
        return apply_long_video(req, info, p, max_video_seconds=60)

    assert run(size="64x64", upscale_refine=0.3).refine_strength == 0.3
    with pytest.raises(InvalidInput, match="upscaled size"):
        run(upscale_refine=0.3)
    with pytest.raises(InvalidInput, match="multiples of 32"):
        run(size="48x48", upscale_refine=0.3)
    with pytest.raises(InvalidInput, match="one clip"):
        run(size="64x64", upscale_refine=0.3, seconds="10")
