"""Tests for model/vae21.py and model/vae22.py: config, shapes, causality, key names, meta-device
sizes, training forward, flat decode memory, and parity with diffusers' AutoencoderKLWan."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import model.vae21 as vae21_module
import model.vae22 as vae22_module
from model.vae21 import (
    WAN21_LATENTS_MEAN,
    WAN21_LATENTS_STD,
    Wan21VAE,
    Wan21VAEConfig,
    diffusers_to_official_vae21_keys,
    official_to_diffusers_vae21_keys,
)
from model.vae22 import (
    WAN22_LATENTS_MEAN,
    WAN22_LATENTS_STD,
    Wan22VAE,
    Wan22VAEConfig,
    diffusers_to_official_vae22_keys,
    official_to_diffusers_vae22_keys,
    patchify,
    unpatchify,
)

# Small but with the official topology (4 levels, 2 res blocks, temporal down in stages 1 and 2).
TINY21 = Wan21VAEConfig(dim=8, z_dim=16)
TINY22 = Wan22VAEConfig(dim=8, dec_dim=16, z_dim=48)
# Even smaller, for shape / property tests.
MINI21 = Wan21VAEConfig(dim=4, z_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1)
MINI22 = Wan22VAEConfig(dim=4, dec_dim=8, z_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1)


def randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Re-draw every parameter (the default init leaves norm gains at 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module.eval()


def video(frames: int, size: int, batch: int = 1, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, size, size, generator=g) * 2 - 1


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def test_config_defaults_are_official() -> None:
    c21, c22 = Wan21VAEConfig(), Wan22VAEConfig()
    assert (c21.dim, c21.z_dim, c21.dim_mult, c21.temperal_downsample) == (
        96,
        16,
        (1, 2, 4, 4),
        (False, True, True),
    )
    assert (c22.dim, c22.dec_dim, c22.z_dim, c22.patch_size) == (160, 256, 48, 2)
    assert (c21.scale_factor_temporal, c21.scale_factor_spatial) == (4, 8)
    assert (c22.scale_factor_temporal, c22.scale_factor_spatial) == (4, 16)
    assert c21.latents_mean == WAN21_LATENTS_MEAN and c21.latents_std == WAN21_LATENTS_STD
    assert c22.latents_mean == WAN22_LATENTS_MEAN and c22.latents_std == WAN22_LATENTS_STD
    assert len(WAN21_LATENTS_MEAN) == len(WAN21_LATENTS_STD) == 16
    assert len(WAN22_LATENTS_MEAN) == len(WAN22_LATENTS_STD) == 48
    assert WAN21_LATENTS_MEAN[0] == -0.7571 and WAN21_LATENTS_STD[-1] == 1.9160
    assert WAN22_LATENTS_MEAN[0] == -0.2289 and WAN22_LATENTS_STD[-1] == 0.7744


def test_config_latent_stats_for_other_z_dims() -> None:
    c = Wan22VAEConfig(dim=4, dec_dim=4, z_dim=4)
    assert c.latents_mean == (0.0,) * 4 and c.latents_std == (1.0,) * 4
    c = Wan21VAEConfig(z_dim=2, latents_mean=[0.5, -0.5], latents_std=[2.0, 3.0])
    assert c.latents_mean == (0.5, -0.5) and c.latents_std == (2.0, 3.0)
    with pytest.raises(ValueError):
        Wan22VAEConfig(z_dim=4, latents_mean=(0.0,) * 3)


def test_config_from_diffusers_dict() -> None:
    d = {
        "_class_name": "AutoencoderKLWan",
        "base_dim": 160,
        "decoder_base_dim": 256,
        "z_dim": 48,
        "is_residual": True,
        "patch_size": 2,
        "in_channels": 12,
        "clip_output": False,
        "temperal_downsample": [False, True, True],
        "latents_mean": list(WAN22_LATENTS_MEAN),
        "latents_std": list(WAN22_LATENTS_STD),
    }
    assert Wan22VAEConfig.from_diffusers_config(d) == Wan22VAEConfig()
    assert Wan21VAEConfig.from_diffusers_config({"base_dim": 96, "z_dim": 16}) == Wan21VAEConfig()
    with pytest.raises(ValueError):
        Wan21VAEConfig.from_diffusers_config(d)


# ---------------------------------------------------------------------------------------------
# Official sizes and key names (meta device: no memory)
# ---------------------------------------------------------------------------------------------


def _meta(cls: type[torch.nn.Module]) -> torch.nn.Module:
    with torch.device("meta"):
        return cls()


def test_wan21_official_size_and_keys() -> None:
    vae = _meta(Wan21VAE)
    assert round(sum(p.numel() for p in vae.parameters()) / 1e6, 1) == 126.9
    sd = vae.state_dict()
    assert len(sd) == 194
    expected = {
        "encoder.conv1.weight": (96, 3, 3, 3, 3),
        "encoder.downsamples.0.residual.0.gamma": (96, 1, 1, 1),
        "encoder.downsamples.0.residual.2.weight": (96, 96, 3, 3, 3),
        "encoder.downsamples.0.residual.6.bias": (96,),
        "encoder.downsamples.2.resample.1.weight": (96, 96, 3, 3),
        "encoder.downsamples.3.shortcut.weight": (192, 96, 1, 1, 1),
        "encoder.downsamples.5.time_conv.weight": (192, 192, 3, 1, 1),
        "encoder.downsamples.8.time_conv.weight": (384, 384, 3, 1, 1),
        "encoder.middle.1.norm.gamma": (384, 1, 1),
        "encoder.middle.1.to_qkv.weight": (1152, 384, 1, 1),
        "encoder.middle.1.proj.weight": (384, 384, 1, 1),
        "encoder.head.0.gamma": (384, 1, 1, 1),
        "encoder.head.2.weight": (32, 384, 3, 3, 3),
        "conv1.weight": (32, 32, 1, 1, 1),
        "conv2.weight": (16, 16, 1, 1, 1),
        "decoder.conv1.weight": (384, 16, 3, 3, 3),
        "decoder.middle.2.residual.3.gamma": (384, 1, 1, 1),
        "decoder.upsamples.3.resample.1.weight": (192, 384, 3, 3),
        "decoder.upsamples.3.time_conv.weight": (768, 384, 3, 1, 1),
        "decoder.upsamples.4.shortcut.weight": (384, 192, 1, 1, 1),
        "decoder.upsamples.7.time_conv.weight": (768, 384, 3, 1, 1),
        "decoder.upsamples.11.resample.1.weight": (96, 192, 3, 3),
        "decoder.upsamples.14.residual.6.weight": (96, 96, 3, 3, 3),
        "decoder.head.2.weight": (3, 96, 3, 3, 3),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any("upsamples.11.time_conv" in k for k in sd)


def test_wan22_official_size_and_keys() -> None:
    vae = _meta(Wan22VAE)
    assert round(sum(p.numel() for p in vae.parameters()) / 1e6, 1) == 704.7
    sd = vae.state_dict()
    assert len(sd) == 196
    expected = {
        "encoder.conv1.weight": (160, 12, 3, 3, 3),
        "encoder.downsamples.0.downsamples.0.residual.0.gamma": (160, 1, 1, 1),
        "encoder.downsamples.0.downsamples.2.resample.1.weight": (160, 160, 3, 3),
        "encoder.downsamples.1.downsamples.0.shortcut.weight": (320, 160, 1, 1, 1),
        "encoder.downsamples.1.downsamples.2.time_conv.weight": (320, 320, 3, 1, 1),
        "encoder.downsamples.2.downsamples.2.time_conv.weight": (640, 640, 3, 1, 1),
        "encoder.downsamples.3.downsamples.1.residual.6.weight": (640, 640, 3, 3, 3),
        "encoder.middle.1.to_qkv.weight": (1920, 640, 1, 1),
        "encoder.head.2.weight": (96, 640, 3, 3, 3),
        "conv1.weight": (96, 96, 1, 1, 1),
        "conv2.weight": (48, 48, 1, 1, 1),
        "decoder.conv1.weight": (1024, 48, 3, 3, 3),
        "decoder.upsamples.0.upsamples.3.resample.1.weight": (1024, 1024, 3, 3),
        "decoder.upsamples.0.upsamples.3.time_conv.weight": (2048, 1024, 3, 1, 1),
        "decoder.upsamples.2.upsamples.0.shortcut.weight": (512, 1024, 1, 1, 1),
        "decoder.upsamples.3.upsamples.2.residual.6.weight": (256, 256, 3, 3, 3),
        "decoder.head.0.gamma": (256, 1, 1, 1),
        "decoder.head.2.weight": (12, 256, 3, 3, 3),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.startswith("decoder.upsamples.2.upsamples.3.time_conv") for k in sd)


# ---------------------------------------------------------------------------------------------
# Shapes, frame rule, causality, streaming, training
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "cfg", "size"), [(Wan21VAE, MINI21, 16), (Wan22VAE, MINI22, 32)])
def test_shapes_frame_rule_and_clamp(cls: type, cfg: object, size: int) -> None:
    vae = randomise(cls(cfg), scale=0.5)
    x = video(11, size, batch=2)
    lat = vae.encode(x[:, :, :9])
    s = cfg.scale_factor_spatial  # type: ignore[attr-defined]
    assert lat.shape == (2, cfg.z_dim, 3, size // s, size // s)  # type: ignore[attr-defined]
    assert not lat.requires_grad
    out = vae.decode(lat)
    assert out.shape == (2, 3, 9, size, size) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    # frames past the last complete chunk of 4 are ignored, as upstream
    assert torch.equal(vae.encode(x), lat)


@pytest.mark.parametrize(("cls", "cfg", "size"), [(Wan21VAE, MINI21, 16), (Wan22VAE, MINI22, 32)])
def test_chunked_processing_is_causal(cls: type, cfg: object, size: int) -> None:
    vae = randomise(cls(cfg))
    x = video(9, size)
    lat = vae.encode(x)
    torch.testing.assert_close(vae.encode(x[:, :, :5]), lat[:, :, :2], rtol=0, atol=1e-6)
    out = vae.decode(lat)
    torch.testing.assert_close(vae.decode(lat[:, :, :2]), out[:, :, :5], rtol=0, atol=1e-6)


def test_streaming_decode_equals_concatenated_chunks() -> None:
    vae = randomise(Wan22VAE(MINI22))
    z = torch.randn(1, 4, 3, 2, 2)
    with torch.no_grad():
        full = vae.decode_latents(vae.denormalize_latents(z)).clamp(-1, 1)
    assert torch.equal(vae.decode(z), full)


@pytest.mark.parametrize(("cls", "cfg"), [(Wan21VAE, MINI21), (Wan22VAE, MINI22)])
def test_frame_by_frame_decoder_tail_is_exact(cls: type, cfg: object) -> None:
    vae = randomise(cls(cfg))
    assert vae.decoder.frames_per_step is None and vae.decoder.split_at > 0  # auto: off on CPU
    z = torch.randn(1, cfg.z_dim, 3, 2, 2, generator=torch.Generator().manual_seed(2))  # type: ignore[attr-defined]
    outs = {}
    for step in (0, 1, 2):
        vae.decoder.frames_per_step = step
        outs[step] = vae.decode(z)
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(outs[2], outs[0], rtol=0, atol=1e-6)


def test_normalisation_round_trip() -> None:
    vae = Wan21VAE(Wan21VAEConfig(dim=4, z_dim=16))
    mu = torch.randn(1, 16, 2, 3, 3)
    z = vae.normalize_latents(mu)
    mean = torch.tensor(WAN21_LATENTS_MEAN).view(1, -1, 1, 1, 1)
    std = torch.tensor(WAN21_LATENTS_STD).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(z, (mu - mean) / std)
    torch.testing.assert_close(vae.denormalize_latents(z), mu)


@pytest.mark.parametrize(("cls", "cfg", "size"), [(Wan21VAE, MINI21, 16), (Wan22VAE, MINI22, 32)])
def test_training_forward_has_gradients(cls: type, cfg: object, size: int) -> None:
    torch.manual_seed(0)
    vae = cls(cfg).train()
    x = video(5, size, batch=2)
    rec, mu, logvar = vae(x, sample_posterior=True, generator=torch.Generator().manual_seed(0))
    assert rec.shape == x.shape and mu.shape == logvar.shape
    loss = (rec - x).pow(2).mean() + 1e-3 * (mu.pow(2) + logvar.exp() - logvar).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in vae.parameters())


def test_patchify_round_trip_and_channel_order() -> None:
    x = torch.arange(2 * 3 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 3, 1, 4, 4)
    p = patchify(x, 2)
    assert p.shape == (2, 12, 1, 2, 2)
    # channel index = c*4 + w_offset*2 + h_offset
    assert p[0, 1, 0, 0, 0] == x[0, 0, 0, 1, 0] and p[0, 2, 0, 0, 0] == x[0, 0, 0, 0, 1]
    assert torch.equal(unpatchify(p, 2), x)


def test_bf16_decode() -> None:
    vae = randomise(Wan22VAE(MINI22)).to(torch.bfloat16)
    out = vae.decode(torch.randn(1, 4, 2, 2, 2))
    assert out.dtype == torch.float32 and out.shape == (1, 3, 5, 32, 32) and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------
# Flat decode memory
# ---------------------------------------------------------------------------------------------


def peak_cpu_bytes(fn) -> int:  # type: ignore[no-untyped-def]
    """Peak of live CPU-allocator bytes during ``fn()``, from the profiler's allocation events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cur = peak = 0
    for ev in sorted(prof.events(), key=lambda e: e.time_range.start):
        cur += ev.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak


def test_decode_memory_is_flat_in_frames() -> None:
    vae = randomise(
        Wan22VAE(Wan22VAEConfig(dim=4, dec_dim=16, z_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1))
    )
    peaks = {}
    for f in (3, 6):
        z = torch.randn(1, 4, f, 2, 2)
        out_bytes = 3 * (1 + 4 * (f - 1)) * 32 * 32 * 4
        peaks[f] = peak_cpu_bytes(lambda z=z: vae.decode(z)) - out_bytes
    # everything but the (preallocated) output must not grow with the frame count
    assert peaks[6] <= peaks[3] * 1.05, peaks
    # running the decoder's full-resolution tail frame by frame lowers the peak further
    vae.decoder.frames_per_step = 1
    z = torch.randn(1, 4, 3, 2, 2)
    assert peak_cpu_bytes(lambda: vae.decode(z)) - 3 * 9 * 32 * 32 * 4 < 0.9 * peaks[3]


# ---------------------------------------------------------------------------------------------
# Key mapping and numerical parity with diffusers (test-only dependency)
# ---------------------------------------------------------------------------------------------

DIFFUSERS_21_OFFICIAL = {"base_dim": 96, "z_dim": 16}
DIFFUSERS_22_OFFICIAL = {
    "base_dim": 160,
    "decoder_base_dim": 256,
    "z_dim": 48,
    "is_residual": True,
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "scale_factor_spatial": 16,
    "latents_mean": list(WAN22_LATENTS_MEAN),
    "latents_std": list(WAN22_LATENTS_STD),
}


@pytest.mark.parametrize(
    ("ours_cls", "kw", "to_official", "to_diffusers"),
    [
        (Wan21VAE, DIFFUSERS_21_OFFICIAL, diffusers_to_official_vae21_keys, official_to_diffusers_vae21_keys),
        (Wan22VAE, DIFFUSERS_22_OFFICIAL, diffusers_to_official_vae22_keys, official_to_diffusers_vae22_keys),
    ],
)
@pytest.mark.parity
def test_key_mapping_at_official_size(ours_cls: type, kw: dict, to_official, to_diffusers) -> None:  # type: ignore[no-untyped-def]
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        ref = diffusers.AutoencoderKLWan(**kw)
    ours = _meta(ours_cls).state_dict()
    ref_sd = ref.state_dict()
    mapped = to_official(ref_sd)
    assert len(mapped) == len(ref_sd)
    assert set(mapped) == set(ours)
    assert all(mapped[k].shape == ours[k].shape for k in ours)
    assert to_diffusers(mapped).keys() == ref_sd.keys()


def test_key_mapping_examples() -> None:
    d21 = {
        "decoder.up_blocks.1.resnets.0.conv_shortcut.weight": 0,
        "decoder.up_blocks.0.upsamplers.0.time_conv.bias": 0,
        "decoder.up_blocks.0.resnets.2.conv2.weight": 0,
        "encoder.down_blocks.5.time_conv.weight": 0,
        "encoder.mid_block.attentions.0.to_qkv.weight": 0,
        "decoder.mid_block.resnets.1.norm2.gamma": 0,
        "quant_conv.weight": 0,
        "post_quant_conv.bias": 0,
        "encoder.norm_out.gamma": 0,
    }
    assert set(diffusers_to_official_vae21_keys(d21)) == {
        "decoder.upsamples.4.shortcut.weight",
        "decoder.upsamples.3.time_conv.bias",
        "decoder.upsamples.2.residual.6.weight",
        "encoder.downsamples.5.time_conv.weight",
        "encoder.middle.1.to_qkv.weight",
        "decoder.middle.2.residual.3.gamma",
        "conv1.weight",
        "conv2.bias",
        "encoder.head.0.gamma",
    }
    d22 = {
        "encoder.down_blocks.1.downsampler.time_conv.weight": 0,
        "encoder.down_blocks.1.resnets.1.conv1.bias": 0,
        "decoder.up_blocks.0.upsampler.resample.1.weight": 0,
        "decoder.up_blocks.0.resnets.2.norm1.gamma": 0,
        "decoder.conv_out.weight": 0,
    }
    assert set(diffusers_to_official_vae22_keys(d22)) == {
        "encoder.downsamples.1.downsamples.2.time_conv.weight",
        "encoder.downsamples.1.downsamples.1.residual.2.bias",
        "decoder.upsamples.0.upsamples.3.resample.1.weight",
        "decoder.upsamples.0.upsamples.2.residual.0.gamma",
        "decoder.head.2.weight",
    }
    with pytest.raises(KeyError, match="bogus"):
        diffusers_to_official_vae22_keys({"bogus.weight": 0})


def _parity(
    ours: torch.nn.Module, ref: torch.nn.Module, to_official, x: torch.Tensor, z: torch.Tensor
) -> None:  # type: ignore[no-untyped-def]
    randomise(ref)
    ours.load_state_dict(to_official(ref.state_dict()), strict=True)
    ours.eval()
    cfg = ours.config  # type: ignore[attr-defined]
    mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        ref_mu = ref.encode(x).latent_dist.mode()
        ref_video = ref.decode(z / inv_std + mean).sample
    ours_lat = ours.encode(x)  # type: ignore[operator]
    assert ours_lat.shape == ref_mu.shape
    assert (ours_lat - (ref_mu - mean) * inv_std).abs().max().item() <= 1e-5
    ours_video = ours.decode(z)  # type: ignore[operator]
    assert ours_video.shape == ref_video.shape
    assert (ours_video - ref_video).abs().max().item() <= 1e-5
    assert 0.05 < ref_video.abs().mean() < 0.95  # not saturated, so the comparison means something


def _stats(z: int, seed: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(z, generator=g).mul(0.3).tolist()), tuple(
        torch.rand(z, generator=g).add(0.5).tolist()
    )


@pytest.mark.parity
def test_wan21_parity_with_diffusers() -> None:
    diffusers = pytest.importorskip("diffusers")
    mean, std = _stats(16, 3)
    ref = diffusers.AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True]
    )
    ours = Wan21VAE(Wan21VAEConfig(dim=8, z_dim=16, latents_mean=mean, latents_std=std))
    z = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    _parity(ours, ref, diffusers_to_official_vae21_keys, video(9, 32), z)


@pytest.mark.parity
def test_wan22_parity_with_diffusers() -> None:
    diffusers = pytest.importorskip("diffusers")
    mean, std = _stats(48, 4)
    ref = diffusers.AutoencoderKLWan(
        base_dim=8,
        decoder_base_dim=16,
        z_dim=48,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        temperal_downsample=[False, True, True],
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_spatial=16,
        latents_mean=list(mean),
        latents_std=list(std),
    )
    ours = Wan22VAE(Wan22VAEConfig(dim=8, dec_dim=16, z_dim=48, latents_mean=mean, latents_std=std))
    z = torch.randn(1, 48, 3, 4, 4, generator=torch.Generator().manual_seed(6))
    _parity(ours, ref, diffusers_to_official_vae22_keys, video(9, 64), z)


@pytest.mark.parametrize(
    ("cls", "cfg"),
    [
        (Wan21VAE, Wan21VAEConfig()),
        (Wan21VAE, MINI21),
        (Wan21VAE, Wan21VAEConfig(dim=8, dim_mult=(1, 2, 4), temperal_downsample=(True, False))),
        (Wan22VAE, Wan22VAEConfig()),
        (Wan22VAE, MINI22),
    ],
)
def test_config_from_state_dict(cls: type, cfg: object) -> None:
    with torch.device("meta"):
        sd = cls(cfg).state_dict()
    assert type(cfg).from_state_dict(sd) == cfg  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("module", "cfg"), [(vae21_module, MINI21), (vae22_module, MINI22)], ids=["2.1", "2.2"]
)
def test_cpu_decode_calls_onednn_and_matches_the_stock_conv(
    module: Any, cfg: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyTorch's own choice for these batch-1, few-channel causal convs is `slow_conv3d`, 5-10x
    slower on CPU; the VAE calls oneDNN instead, with the same numbers up to fp32 rounding."""
    cls = module.Wan21VAE if module is vae21_module else module.Wan22VAE
    vae = randomise(cls(cfg))
    z = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fast = vae.decode(z)
    events = prof.key_averages(group_by_input_shape=True)
    assert any(e.key == "aten::mkldnn_convolution" for e in events)
    slow_kernels = {tuple(e.input_shapes[1][2:]) for e in events if e.key == "aten::slow_conv3d_forward"}
    assert slow_kernels <= {(1, 1, 1)}  # only the 1x1x1 convs (as fast either way) keep the stock path
    monkeypatch.setattr(module.CausalConv3d, "onednn", False)
    stock = vae.decode(z)
    torch.testing.assert_close(fast, stock, rtol=0, atol=1e-5)
    assert fast.abs().mean() > 0.05
