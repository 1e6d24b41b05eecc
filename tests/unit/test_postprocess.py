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


@pytest.fixture(scope="module")
def rife():  # type: ignore[no-untyped-def]
    import torch

    from model.interpolator import IFNet, RifeInterpolator

    torch.manual_seed(0)
    return RifeInterpolator(IFNet())  # random weights: what matters here is which frames it is asked for


def test_source_positions_whole_and_fractional() -> None:
    from fractions import Fraction

    from worker.postprocess import source_positions

    assert source_positions(3, 8, 16) == [(0, 0), (0, Fraction(1, 2)), (1, 0), (1, Fraction(1, 2)), (2, 0)]
    assert [float(t) for _, t in source_positions(5, 24, 30)] == [0, 0.8, 0.6, 0.4, 0.2, 0]
    assert [i for i, _ in source_positions(5, 24, 30)] == [0, 0, 1, 2, 3, 4]


@pytest.mark.parametrize(("fps", "out"), [(8, 16), (8, 24), (24, 30)])
def test_learned_interpolation_count_originals_and_no_duplicates(rife, fps: int, out: int) -> None:  # type: ignore[no-untyped-def]
    import torch

    from worker.postprocess import interpolate_learned, source_positions

    x = moving(5)
    y = interpolate_learned(x, fps, out, rife)
    assert y.shape == (interpolated_count(5, fps, out), 32, 32, 3) and y.dtype == np.uint8
    for j, (i, t) in enumerate(source_positions(5, fps, out)):
        if t == 0:
            assert np.array_equal(y[j], x[i])  # generated frames pass through untouched
        elif j < 3:  # synthesised between the right pair at the right timestep
            want = rife.between(torch.from_numpy(x[i]), torch.from_numpy(x[i + 1]), float(t)).numpy()
            assert np.array_equal(y[j], want)
    diffs = np.abs(np.diff(y.astype(np.int16), axis=0)).reshape(len(y) - 1, -1).max(axis=1)
    assert (diffs > 0).all()


def test_apply_output_uses_the_interpolator_the_parameters_name(rife) -> None:  # type: ignore[no-untyped-def]
    from worker.postprocess import apply_output as worker_output

    info = INFO.model_copy(update={"interpolation": "rife"})
    req = VideoCreate(prompt="x", fps=16, num_frames=5)
    p = apply_output(req, info, resolve(req, info, has_image=False), None)
    assert (p.fps, p.output_fps, p.interpolation) == (8, 16, "rife")
    x = moving(5)
    learned, rate = worker_output(x, p, rife)
    assert rate == 16 and len(learned) == 9
    classic, _ = worker_output(x, p.model_copy(update={"interpolation": "minterpolate"}), rife)
    assert not np.array_equal(learned[1], classic[1])
    fallback, _ = worker_output(x, p, None)  # no weights on this worker: minterpolate
    assert np.array_equal(fallback, classic)
