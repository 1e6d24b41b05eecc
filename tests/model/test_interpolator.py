"""The learned frame interpolator (RIFE v4.6 IFNet layout) and its checkpoint loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.interpolator import IFNet, RifeInterpolator, backward_warp, expected_shapes, load_interpolator
from model.loading import CheckpointError


def net_with(seed: int = 0) -> IFNet:
    torch.manual_seed(seed)
    return IFNet().eval()


def quiet(net: IFNet, *, mask_bias: float = 0.0) -> IFNet:
    """Every block predicts nothing (zero flow); the last one a constant mask logit."""
    with torch.no_grad():
        for block in (net.block0, net.block1, net.block2, net.block3):
            block.lastconv[0].weight.zero_()
            block.lastconv[0].bias.zero_()
        # after the pixel shuffle by 2, output channel k comes from transposed-conv channels 4k..4k+3
        net.block3.lastconv[0].bias[16:20] = mask_bias
    return net


def smooth_image(h: int = 64, w: int = 96, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(
        0, 1
    )


def test_checkpoint_layout_matches_rife_v46() -> None:
    sd = IFNet().state_dict()
    assert len(sd) == 4 * (4 + 8 * 3 + 2)
    assert sd["block0.conv0.0.0.weight"].shape == (96, 7, 3, 3)
    assert sd["block1.conv0.0.0.weight"].shape == (64, 12, 3, 3)
    assert sd["block3.conv0.1.0.weight"].shape == (64, 32, 3, 3)
    assert sd["block0.convblock.7.conv.weight"].shape == (192, 192, 3, 3)
    assert sd["block2.convblock.0.beta"].shape == (1, 96, 1, 1)
    assert sd["block0.lastconv.0.weight"].shape == (192, 24, 4, 4)
    assert sd["block3.lastconv.0.bias"].shape == (24,)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected_shapes()  # what files are checked against


def test_shapes_and_range() -> None:
    net = net_with()
    a, b = smooth_image(seed=1), smooth_image(seed=2)
    out = net(torch.cat([a, a]), torch.cat([b, b]), torch.tensor([0.25, 0.75]))
    assert out.shape == (2, 3, 64, 96) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # the timestep channel reaches the prediction


def test_integer_translation_is_undone_by_warping() -> None:
    img = smooth_image()
    shifted = torch.roll(img, shifts=3, dims=3)  # shifted(x) = img(x - 3)
    flow = torch.zeros(1, 2, 64, 96)
    flow[:, 0] = 3.0  # sample shifted at x + 3
    back = backward_warp(shifted, flow)
    assert torch.allclose(back[..., :-3], img[..., :-3], atol=1e-5)
    down = torch.roll(img, shifts=2, dims=2)
    flow = torch.zeros(1, 2, 64, 96)
    flow[:, 1] = 2.0
    assert torch.allclose(backward_warp(down, flow)[..., :-2, :], img[..., :-2, :], atol=1e-5)
    half = torch.zeros(1, 2, 64, 96)
    half[:, 0] = 0.5  # bilinear: halfway between neighbours
    mid = (img[..., :-1] + img[..., 1:]) / 2
    assert torch.allclose(backward_warp(img, half)[..., :-1], mid, atol=1e-5)


def test_blend_follows_the_mask_and_equal_frames_are_kept() -> None:
    a, b = smooth_image(seed=1), smooth_image(seed=2)
    t = torch.tensor([0.5])
    assert torch.allclose(quiet(net_with())(a, a, t), a, atol=1e-6)  # nothing moves: identity
    assert torch.allclose(quiet(net_with())(a, b, t), (a + b) / 2, atol=1e-6)  # mask logit 0
    assert torch.allclose(quiet(net_with(), mask_bias=30.0)(a, b, t), a, atol=1e-6)  # m = 1: I0
    assert torch.allclose(quiet(net_with(), mask_bias=-30.0)(a, b, t), b, atol=1e-6)  # m = 0: I1


def test_coarse_flow_is_scaled_to_pixels_of_the_frame() -> None:
    """block0 runs at 1/8: its raw output 3/8 means 3 pixels of the full frame."""
    net = quiet(net_with(), mask_bias=30.0)
    with torch.no_grad():
        net.block0.lastconv[0].bias[0:4] = 3.0 / 8  # channel 0: dx of the flow towards I0
    a, b = smooth_image(seed=1), smooth_image(seed=2)
    flow = torch.zeros(1, 2, 64, 96)
    flow[:, 0] = 3.0
    assert torch.allclose(net(a, b, torch.tensor([0.5])), backward_warp(a, flow), atol=1e-5)


def test_uint8_frames_of_any_size_are_padded_and_cropped() -> None:
    interp = RifeInterpolator(quiet(net_with()))
    a = (smooth_image(30, 40) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).contiguous()
    out = interp.between(a, a, 0.3)
    assert out.shape == (30, 40, 3) and out.dtype == torch.uint8 and torch.equal(out, a)
    noisy = RifeInterpolator(net_with()).between(a, torch.flip(a, dims=(1,)), 0.5)
    assert noisy.shape == (30, 40, 3)


def official_style_checkpoint(path: Path, seed: int = 5) -> dict[str, torch.Tensor]:
    """What train_log/flownet.pkl holds: the state dict saved from a DataParallel module."""
    sd = net_with(seed).state_dict()
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)
    return sd


def test_loads_the_official_pickle_layout(tmp_path: Path) -> None:
    sd = official_style_checkpoint(tmp_path / "flownet.pkl")
    interp = load_interpolator(tmp_path / "flownet.pkl")
    got = interp.net.state_dict()
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)


def test_loads_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sd = net_with(7).state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "rife46.safetensors"))
    got = load_interpolator(tmp_path / "rife46.safetensors").net.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in sd)


def test_bad_checkpoints_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_interpolator(tmp_path / "absent.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_interpolator(tmp_path / "junk.pkl")
    sd = net_with().state_dict()
    del sd["block2.convblock.3.beta"]
    torch.save(sd, tmp_path / "partial.pkl")
    with pytest.raises(CheckpointError, match=r"missing \['block2.convblock.3.beta'\]"):
        load_interpolator(tmp_path / "partial.pkl")
    sd = net_with().state_dict()
    sd["block0.lastconv.0.bias"] = torch.zeros(5)  # an older release's 5-channel head
    torch.save(sd, tmp_path / "other.pkl")
    with pytest.raises(CheckpointError, match=r"block0.lastconv.0.bias has shape \(5,\)"):
        load_interpolator(tmp_path / "other.pkl")
