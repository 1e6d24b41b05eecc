"""Live-preview factors: the least-squares fit, the latent layout, the published factors, the hook."""

from __future__ import annotations

import json

import pytest
import torch

import model
from model.loading import checkpoint_dir
from model.preview import (
    PREVIEW_FILE,
    LatentRGB,
    fit_latent_rgb,
    load_latent_rgb,
    pixel_targets,
    preview_frames,
    published_latent_rgb,
)
from model.preview_fit import fit_vae, synthetic_clips
from model.vae21 import Wan21VAE, Wan21VAEConfig
from model.vae22 import Wan22VAE, Wan22VAEConfig


def test_fit_recovers_a_linear_map() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, generator=g) * 0.3
    b = torch.tensor([0.1, -0.2, 0.05])
    lat = torch.randn(4, 6, 3, 5, 5, generator=g)
    target = torch.einsum("ncthw,cr->nrthw", lat, w) + b[:, None, None, None]
    fitted = fit_latent_rgb(lat, target + 0.01 * torch.randn(target.shape, generator=g), ridge=0.0)
    assert torch.allclose(torch.tensor(fitted.weight), w, atol=5e-3)
    assert torch.allclose(torch.tensor(fitted.bias), b, atol=5e-3)
    assert torch.allclose(fitted.apply_batch(lat), target, atol=0.05)
    again = LatentRGB.from_json(json.loads(json.dumps(fitted.as_json())))
    assert again == fitted


def test_apply_refuses_other_channel_counts() -> None:
    f = LatentRGB(((1.0, 0.0, 0.0),) * 4, (0.0, 0.0, 0.0))
    assert f.apply(torch.zeros(4, 2, 3, 3)).shape == (3, 2, 3, 3)
    with pytest.raises(ValueError, match="channels"):
        f.apply(torch.zeros(5, 2, 3, 3))


def test_pixel_targets_follow_the_causal_latent_layout() -> None:
    # pixel frame f has value f everywhere: latent frame 0 = frame 0, frame k = mean of frames 4k-3..4k
    video = torch.arange(9, dtype=torch.float32)[None, None, :, None, None].expand(1, 3, 9, 8, 8)
    t = pixel_targets(video, (4, 4, 4))
    assert t.shape == (1, 3, 3, 2, 2)
    assert t[0, 0, :, 0, 0].tolist() == [0.0, 2.5, 6.5]


def test_preview_frames_pick_spread_frames_and_upsample() -> None:
    rgb = torch.linspace(-1, 1, 7)[None, :, None, None].expand(3, 7, 6, 8)
    frames = preview_frames(rgb, max_frames=4, max_side=64)
    assert frames.shape == (4, 48, 64, 3) and frames.dtype.name == "uint8"
    assert frames[0].max() == 0 and frames[-1].min() == 255  # first and last latent frames kept


def test_published_factors_only_for_full_size_official_vaes() -> None:
    with torch.device("meta"):
        v21, v22 = Wan21VAE(Wan21VAEConfig()), Wan22VAE(Wan22VAEConfig())
        tiny = Wan22VAE(
            Wan22VAEConfig(
                dim=16, dec_dim=16, z_dim=48, dim_mult=(2, 2), num_res_blocks=1, temperal_downsample=(True,)
            )
        )
    f21, f22 = published_latent_rgb(v21), published_latent_rgb(v22)
    assert f21 is not None and f21.channels == 16 and f21.bias == (-0.1835, -0.0868, -0.336)
    assert f22 is not None and f22.channels == 48 and f22.weight[39] == (-0.3441, -0.3543, -0.2008)
    assert published_latent_rgb(tiny) is None


def _demo_fit_error(
    factors: LatentRGB, vae: torch.nn.Module, stride: tuple[int, int, int]
) -> tuple[float, float]:
    video = synthetic_clips(8, 9, 32, 32, seed=123)  # clips the fit never saw
    with torch.no_grad():
        lat = vae.encode(video)
    target = pixel_targets(video, stride)
    err = float((factors.apply_batch(lat) - target).pow(2).mean().sqrt())
    spread = float((target - target.mean(dim=(0, 2, 3, 4), keepdim=True)).pow(2).mean().sqrt())
    return err, spread


def test_demo_checkpoint_ships_fitted_factors_that_explain_its_colours() -> None:
    pipe = model.load_pipeline("wanserve-demo")
    folder = checkpoint_dir("wanserve-demo")
    assert folder is not None and (folder / PREVIEW_FILE).is_file()
    assert pipe.latent_rgb is not None and pipe.latent_rgb == load_latent_rgb(folder, pipe.vae)
    err, spread = _demo_fit_error(pipe.latent_rgb, pipe.vae, pipe.preset.vae_stride)
    assert err < 0.6 * spread, (err, spread)  # a random or stale map does not get near this
    refit, rmse = fit_vae(pipe.vae, pipe.preset.vae_stride, clips=8)
    assert rmse < 0.6 * spread


def test_hook_sees_x0_which_is_the_final_latent_at_the_last_euler_step() -> None:
    pipe = model.load_pipeline("tiny-ti2v")
    decoded: list[torch.Tensor] = []
    real_decode = pipe.vae.decode
    pipe.vae.decode = lambda z: decoded.append(z.clone()) or real_decode(z)  # type: ignore[method-assign]
    seen: list[tuple[int, int, torch.Tensor]] = []
    pipe.generate("x", num_steps=3, sampler="euler", preview=lambda s, n, x0: seen.append((s, n, x0())))
    assert [(s, n) for s, n, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    # Euler's last step goes to sigma 0, i.e. exactly x_t - sigma * v
    assert torch.allclose(seen[-1][2], decoded[0].float(), atol=1e-5)
    assert not torch.allclose(seen[0][2], seen[-1][2])
