"""Wan2.2 video VAE (z 48, 4x16x16 compression), used by TI2V-5B.

Same causal, chunked design as the Wan2.1 VAE (``model.vae21``), with these differences:

* the video is pixel-patchified 2x2 before the encoder (3 -> 12 channels at half resolution) and
  the decoder output is un-patchified, so the spatial factor is 2 x 8 = 16;
* each encoder stage is a residual "down stage": its blocks plus a parameter-free ``AvgDown3D``
  shortcut (fold 2x2 space and, where time is downsampled, 2 frames into channels, then average
  channel groups); each upsampling decoder stage adds a parameter-free ``DupUp3D`` shortcut
  (repeat channels, unfold into 2x2 space and 2 frames);
* decoder upsampling convolutions keep the channel count, and the decoder has its own base width.

Parameter names equal the keys of the official ``Wan2.2_VAE.pth``
(``encoder.downsamples.I.downsamples.J...``, ``decoder.upsamples.I.upsamples.J...``);
``diffusers_to_official_vae22_keys`` renames a diffusers ``AutoencoderKLWan`` (``is_residual``)
state dict.

Public API: ``Wan22VAEConfig``, ``Wan22VAE`` (``encode``/``decode`` for inference,
``encode_distribution``/``decode_latents``/``forward`` for training with autograd),
``Wan22VAEConfig.from_diffusers_config`` / ``.from_state_dict``, ``diffusers_to_official_vae22_keys``
and its inverse ``official_to_diffusers_vae22_keys``.

Beyond upstream: ``decode`` writes into a preallocated output (no growing list / concatenation),
and the decoder can run its full-resolution tail (everything after the last temporal upsampler)
one frame at a time (``decoder.frames_per_step``; default: on accelerators only), which gives the
same result with about 25-35% less peak memory. Peak memory does not grow with the frame count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CACHE_T = 2  # frames of history a causal 3x3x3 conv needs

# Official per-channel latent statistics of the Wan2.2 VAE (z_dim 48).
WAN22_LATENTS_MEAN: tuple[float, ...] = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)  # fmt: skip
WAN22_LATENTS_STD: tuple[float, ...] = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)  # fmt: skip


@dataclass(frozen=True)
class Wan22VAEConfig:
    """Sizes of a Wan2.2-style VAE. The defaults are the official ones.

    ``dim`` is the encoder base width, ``dec_dim`` the decoder's. ``latents_mean``/``latents_std``
    default to the official constants when ``z_dim == 48`` and to zeros/ones otherwise; pass
    explicit tuples to override. (Upstream has no attention inside the stages, so there is no
    ``attn_scales``.)
    """

    dim: int = 160
    dec_dim: int = 256
    z_dim: int = 48
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temperal_downsample: tuple[bool, ...] = (False, True, True)
    dropout: float = 0.0
    patch_size: int = 2
    latents_mean: tuple[float, ...] | None = field(default=None)
    latents_std: tuple[float, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("dim_mult", "temperal_downsample"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.temperal_downsample) != len(self.dim_mult) - 1:
            raise ValueError("temperal_downsample needs len(dim_mult) - 1 entries")
        official = self.z_dim == len(WAN22_LATENTS_MEAN)
        mean = self.latents_mean
        std = self.latents_std
        if mean is None:
            mean = WAN22_LATENTS_MEAN if official else (0.0,) * self.z_dim
        if std is None:
            std = WAN22_LATENTS_STD if official else (1.0,) * self.z_dim
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if len(mean) != self.z_dim or len(std) != self.z_dim:
            raise ValueError(f"latents_mean/std need z_dim={self.z_dim} values")
        object.__setattr__(self, "latents_mean", mean)
        object.__setattr__(self, "latents_std", std)

    @property
    def pixel_channels(self) -> int:
        """Channels after patchify (12 for the official 2x2 patch)."""
        return 3 * self.patch_size**2

    @property
    def scale_factor_temporal(self) -> int:
        return int(2 ** sum(self.temperal_downsample))

    @property
    def scale_factor_spatial(self) -> int:
        return int(self.patch_size * 2 ** (len(self.dim_mult) - 1))

    @classmethod
    def from_diffusers_config(cls, cfg: Mapping[str, Any]) -> Wan22VAEConfig:
        """Build from a diffusers ``AutoencoderKLWan`` ``config.json`` dict (unknown keys ignored)."""
        if not cfg.get("is_residual", False):
            raise ValueError("is_residual=False is the Wan2.1 VAE; use Wan21VAEConfig")
        kw: dict[str, Any] = {}
        for ours, theirs in (
            ("dim", "base_dim"), ("dec_dim", "decoder_base_dim"), ("z_dim", "z_dim"),
            ("dim_mult", "dim_mult"), ("num_res_blocks", "num_res_blocks"),
            ("temperal_downsample", "temperal_downsample"), ("dropout", "dropout"),
            ("patch_size", "patch_size"), ("latents_mean", "latents_mean"), ("latents_std", "latents_std"),
        ):  # fmt: skip
            if cfg.get(theirs) is not None:
                kw[ours] = cfg[theirs]
        if cfg.get("decoder_base_dim") is None and "dim" in kw:
            kw["dec_dim"] = kw["dim"]
        return cls(**kw)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, Any], **overrides: Any) -> Wan22VAEConfig:
        """Infer the sizes from an official-layout state dict (tensor shapes only; meta is fine).

        ``latents_mean``/``latents_std`` cannot be inferred: they follow the z_dim rule above
        unless given in ``overrides``.
        """
        conv_in = sd["encoder.conv1.weight"]
        dim = int(conv_in.shape[0])
        levels = 0
        while f"encoder.downsamples.{levels}.downsamples.0.residual.2.weight" in sd:
            levels += 1
        n_res = 0
        while f"encoder.downsamples.0.downsamples.{n_res}.residual.2.weight" in sd:
            n_res += 1
        kw: dict[str, Any] = {
            "dim": dim,
            "dec_dim": int(sd["decoder.head.2.weight"].shape[1]),
            "z_dim": int(sd["conv2.weight"].shape[0]),
            "num_res_blocks": n_res,
            "dim_mult": tuple(
                int(sd[f"encoder.downsamples.{i}.downsamples.0.residual.2.weight"].shape[0]) // dim
                for i in range(levels)
            ),
            "temperal_downsample": tuple(
                f"encoder.downsamples.{i}.downsamples.{n_res}.time_conv.weight" in sd
                for i in range(levels - 1)
            ),
            "patch_size": round((int(conv_in.shape[1]) // 3) ** 0.5),
        }
        kw.update(overrides)
        return cls(**kw)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, F, H*p, W*p] -> [B, C*p*p, F, H, W]; channel order (c, w-offset, h-offset)."""
    b, c, f, hp, wp = x.shape
    x = x.reshape(b, c, f, hp // p, p, wp // p, p)
    return x.permute(0, 1, 6, 4, 2, 3, 5).reshape(b, c * p * p, f, hp // p, wp // p)


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Inverse of ``patchify``."""
    b, cpp, f, h, w = x.shape
    x = x.reshape(b, cpp // (p * p), p, p, f, h, w)  # c, w-offset, h-offset
    return x.permute(0, 1, 4, 5, 3, 6, 2).reshape(b, cpp // (p * p), f, h * p, w * p)


# --------------------------------------------------------------------------------------------
# Building blocks (shared with model.vae21, duplicated so each file reads on its own)
# --------------------------------------------------------------------------------------------


# Copied from model.vae21.FeatureCache
class FeatureCache:
    """Causal memory for chunked processing.

    Every causal convolution owns one slot; each chunk walks the convolutions in the same order,
    so a cursor that is rewound at the start of a chunk finds the right slot. A slot holds the
    last ``CACHE_T`` input frames of its convolution (or a marker string for special cases).
    """

    def __init__(self) -> None:
        self._slots: list[Any] = []
        self._pos = 0

    def rewind(self) -> None:
        self._pos = 0

    @property
    def position(self) -> int:
        return self._pos

    def seek(self, pos: int) -> None:
        self._pos = pos

    def peek(self) -> Any:
        return self._slots[self._pos] if self._pos < len(self._slots) else None

    def push(self, value: Any) -> None:
        if self._pos < len(self._slots):
            self._slots[self._pos] = value
        else:
            self._slots.append(value)
        self._pos += 1


# Copied from model.vae21.frame_tail
def frame_tail(x: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
    """The last ``CACHE_T`` frames of ``x``, topped up from ``prev`` when the chunk is shorter."""
    tail = x[:, :, -CACHE_T:].clone()
    if tail.shape[2] < CACHE_T and prev is not None:
        tail = torch.cat([prev[:, :, -1:].to(tail), tail], dim=2)
    return tail


# Copied from model.vae21.onednn_applies
def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a causal conv should call oneDNN directly: CPU float32 inference, kernel wider than 1.

    For a batch of one with few channels PyTorch's heuristic picks its native ``slow_conv3d``
    (im2col + GEMM), 5-10x slower than oneDNN for the VAE's 3x3x3 convolutions on one core
    (e.g. 0.15 s vs 0.013 s for 16 channels x 6 x 128 x 128), and most of the CPU decode time.
    1x1x1 kernels are equally fast both ways and keep the stock path; bfloat16 already goes to
    oneDNN; autograd keeps the stock path, whose backward is the reference.
    """
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.shape[2:].numel() > 1
        and torch.backends.mkldnn.is_available()
        and bool(torch.backends.mkldnn.enabled)
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    )


# Copied from model.vae21.CausalConv3d
class CausalConv3d(nn.Conv3d):
    """3-D convolution that pads time only on the past side (``2 * pad_t`` frames).

    Given ``past`` frames (from the cache) they replace that much of the zero padding. Spatial
    padding is symmetric and done by the convolution itself.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        pt, ph, pw = (padding,) * 3 if isinstance(padding, int) else padding
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(0, ph, pw))
        self.time_pad = 2 * pt

    onednn = True  # route CPU float32 inference through oneDNN (see `onednn_applies`); off: stock conv3d

    def forward(self, x: torch.Tensor, past: torch.Tensor | None = None) -> torch.Tensor:
        pad = self.time_pad
        if pad > 0 and past is not None:
            x = torch.cat([past.to(x), x], dim=2)
            pad -= past.shape[2]
        if pad > 0:
            x = F.pad(x, (0, 0, 0, 0, pad, 0))
        if self.onednn and onednn_applies(x, self.weight):
            return torch.mkldnn_convolution(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups
            )
        return super().forward(x)


# Copied from model.vae21.cached_conv
def cached_conv(conv: CausalConv3d, x: torch.Tensor, cache: FeatureCache | None) -> torch.Tensor:
    """Run ``conv`` on a chunk, using and then updating its slot of ``cache``."""
    if cache is None:
        return conv(x)
    prev = cache.peek()
    cache.push(frame_tail(x, prev))
    return conv(x, prev)


# Copied from model.vae21.RMSNorm
class RMSNorm(nn.Module):
    """L2-normalise over channels, times sqrt(C) and a learned per-channel gain ``gamma``."""

    def __init__(self, dim: int, spatial_dims: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, *([1] * spatial_dims)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            y = F.normalize(x.float(), dim=1).to(x.dtype)
        else:
            y = F.normalize(x, dim=1)
        return y * self.scale * self.gamma


# Copied from model.vae21.ResidualBlock
class ResidualBlock(nn.Module):
    """norm-SiLU-conv3 -norm-SiLU-dropout-conv3 plus a 1x1x1 shortcut when the width changes.

    ``residual`` is a Sequential so that parameter indices match the checkpoint
    (``residual.0.gamma``, ``residual.2``, ``residual.3.gamma``, ``residual.6``).
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim, 3),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim, 3),
            nn.SiLU(),
            nn.Dropout(dropout),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut: nn.Module = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = cached_conv(layer, x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


# Copied from model.vae21.AttentionBlock
class AttentionBlock(nn.Module):
    """Single-head spatial self-attention, each frame on its own (frames do not see each other)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, 2)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = x.transpose(1, 2).reshape(b * t, c, h, w)
        qkv = self.to_qkv(self.norm(y)).reshape(b * t, 1, 3 * c, h * w).transpose(-1, -2)
        q, k, v = qkv.chunk(3, dim=-1)  # each [b*t, 1, h*w, c]
        y = F.scaled_dot_product_attention(q, k, v)
        y = self.proj(y.squeeze(1).transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).transpose(1, 2) + x


# Copied from model.vae21.Upsample2x
class Upsample2x(nn.Module):
    """Nearest-exact 2x spatial upsampling of [N, C, H, W] (computed in fp32, cast back)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.float(), scale_factor=2.0, mode="nearest-exact").to(x.dtype)


# Copied from model.vae21._FIRST
_FIRST = "first-chunk"  # cache marker: the temporal upsampler skipped latent frame 0


# Copied from model.vae21.per_frame
def per_frame(fn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D module to every frame of [B, C, T, H, W]."""
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


# Copied from model.vae21.Resample
class Resample(nn.Module):
    """Spatial 2x down/up sampling, optionally with a temporal 2x stage (``time_conv``).

    modes: ``downsample2d``, ``downsample3d``, ``upsample2d``, ``upsample3d``. The upsampling
    convolution outputs ``up_dim`` channels (Wan2.1: ``dim // 2``).
    """

    def __init__(self, dim: int, mode: str, up_dim: int | None = None) -> None:
        super().__init__()
        self.mode = mode
        if mode.startswith("upsample"):
            out = dim // 2 if up_dim is None else up_dim
            self.resample = nn.Sequential(Upsample2x(), nn.Conv2d(dim, out, 3, padding=1))
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode.startswith("downsample"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))
        else:
            raise ValueError(f"unknown resample mode {mode!r}")

    def _time_up(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        prev = cache.peek()
        if prev is None:  # latent frame 0 is not upsampled in time
            cache.push(_FIRST)
            return x
        tail = x[:, :, -CACHE_T:].clone()
        if tail.shape[2] < CACHE_T:
            top = torch.zeros_like(tail[:, :, -1:]) if isinstance(prev, str) else prev[:, :, -1:].to(tail)
            tail = torch.cat([top, tail], dim=2)
        y = self.time_conv(x, None if isinstance(prev, str) else prev)
        cache.push(tail)
        b, c2, t, h, w = y.shape
        # the two channel halves become frames 2i and 2i+1
        return y.reshape(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * t, h, w)

    def _time_down(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        prev = cache.peek()
        cache.push(x[:, :, -1:].clone())
        if prev is None:  # the first chunk (frame 0) is only remembered
            return x
        return self.time_conv(torch.cat([prev.to(x), x], dim=2))

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        if self.mode == "upsample3d" and cache is not None:
            x = self._time_up(x, cache)
        x = per_frame(self.resample, x)
        if self.mode == "downsample3d" and cache is not None:
            x = self._time_down(x, cache)
        return x


class AvgDown3D(nn.Module):
    """Parameter-free downsampling shortcut.

    Folds each ``factor_t x factor_s x factor_s`` block into channels (time padded at the front to a
    multiple of ``factor_t``), then averages consecutive channel groups down to ``out_dim``.
    """

    def __init__(self, in_dim: int, out_dim: int, factor_t: int, factor_s: int) -> None:
        super().__init__()
        folded = in_dim * factor_t * factor_s * factor_s
        if folded % out_dim:
            raise ValueError(f"in_dim*factor ({folded}) must be divisible by out_dim ({out_dim})")
        self.out_dim, self.ft, self.fs = out_dim, factor_t, factor_s
        self.group = folded // out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ft, fs = self.ft, self.fs
        if ft == fs == self.group == 1:
            return x
        pad = (-x.shape[2]) % ft
        if pad:
            x = F.pad(x, (0, 0, 0, 0, pad, 0))
        b, c, t, h, w = x.shape
        x = x.reshape(b, c, t // ft, ft, h // fs, fs, w // fs, fs).permute(0, 1, 3, 5, 7, 2, 4, 6)
        return x.reshape(b, self.out_dim, self.group, t // ft, h // fs, w // fs).mean(dim=2)


class DupUp3D(nn.Module):
    """Parameter-free upsampling shortcut: repeat channels, unfold them into ``factor_t`` frames and
    ``factor_s x factor_s`` pixels. On the first chunk the leading ``factor_t - 1`` frames are
    dropped so that frame counts match the main path (which does not upsample latent frame 0)."""

    def __init__(self, in_dim: int, out_dim: int, factor_t: int, factor_s: int) -> None:
        super().__init__()
        expanded = out_dim * factor_t * factor_s * factor_s
        if expanded % in_dim:
            raise ValueError(f"out_dim*factor ({expanded}) must be divisible by in_dim ({in_dim})")
        self.out_dim, self.ft, self.fs = out_dim, factor_t, factor_s
        self.repeats = expanded // in_dim

    def forward(self, x: torch.Tensor, first_chunk: bool = False) -> torch.Tensor:
        ft, fs, c = self.ft, self.fs, self.out_dim
        b, _, t, h, w = x.shape
        x = x.repeat_interleave(self.repeats, dim=1).reshape(b, c, ft, fs, fs, t, h, w)
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c, t * ft, h * fs, w * fs)
        if first_chunk and ft > 1:
            x = x[:, :, ft - 1 :]
        return x


class DownStage(nn.Module):
    """Encoder stage: residual blocks (+ optional 2x downsampler) plus an ``AvgDown3D`` shortcut."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_res_blocks: int,
        dropout: float,
        down_time: bool,
        down_space: bool,
    ) -> None:
        super().__init__()
        self.avg_shortcut = AvgDown3D(in_dim, out_dim, 2 if down_time else 1, 2 if down_space else 1)
        blocks: list[nn.Module] = []
        for _ in range(num_res_blocks):
            blocks.append(ResidualBlock(in_dim, out_dim, dropout))
            in_dim = out_dim
        if down_space:
            blocks.append(Resample(out_dim, "downsample3d" if down_time else "downsample2d"))
        self.downsamples = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        h = x
        for block in self.downsamples:
            h = block(h, cache)
        return h + self.avg_shortcut(x)


class UpStage(nn.Module):
    """Decoder stage: residual blocks (+ optional 2x upsampler) plus a ``DupUp3D`` shortcut when it
    upsamples."""

    def __init__(
        self, in_dim: int, out_dim: int, num_blocks: int, dropout: float, up_time: bool, up_space: bool
    ) -> None:
        super().__init__()
        self.avg_shortcut = DupUp3D(in_dim, out_dim, 2 if up_time else 1, 2) if up_space else None
        blocks: list[nn.Module] = []
        for _ in range(num_blocks):
            blocks.append(ResidualBlock(in_dim, out_dim, dropout))
            in_dim = out_dim
        if up_space:
            blocks.append(Resample(out_dim, "upsample3d" if up_time else "upsample2d", up_dim=out_dim))
        self.upsamples = nn.ModuleList(blocks)

    def forward(
        self, x: torch.Tensor, cache: FeatureCache | None = None, first_chunk: bool = False
    ) -> torch.Tensor:
        h = x
        for block in self.upsamples:
            h = block(h, cache)
        if self.avg_shortcut is not None:
            h = h + self.avg_shortcut(x, first_chunk)
        return h


# --------------------------------------------------------------------------------------------
# Encoder / decoder
# --------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self, cfg: Wan22VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(cfg.pixel_channels, dims[0], 3, padding=1)
        last = len(cfg.dim_mult) - 1
        self.downsamples = nn.ModuleList(
            DownStage(cin, cout, cfg.num_res_blocks, cfg.dropout,
                      down_time=i < last and cfg.temperal_downsample[i], down_space=i < last)
            for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:], strict=True))
        )  # fmt: skip
        top = dims[-1]
        self.middle = nn.ModuleList(
            [ResidualBlock(top, top, cfg.dropout), AttentionBlock(top), ResidualBlock(top, top, cfg.dropout)]
        )
        self.head = nn.Sequential(RMSNorm(top, 3), nn.SiLU(), CausalConv3d(top, 2 * cfg.z_dim, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        x = cached_conv(self.conv1, x, cache)
        for block in (*self.downsamples, *self.middle):
            x = block(x, cache)
        x = self.head[1](self.head[0](x))
        return cached_conv(self.head[2], x, cache)


class Decoder(nn.Module):
    def __init__(self, cfg: Wan22VAEConfig) -> None:
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.dec_dim * m for m in (mult[-1], *mult[::-1])]
        temperal_upsample = cfg.temperal_downsample[::-1]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = nn.ModuleList(
            [ResidualBlock(dims[0], dims[0], cfg.dropout), AttentionBlock(dims[0]),
             ResidualBlock(dims[0], dims[0], cfg.dropout)]
        )  # fmt: skip
        last = len(mult) - 1
        self.upsamples = nn.ModuleList(
            UpStage(cin, cout, cfg.num_res_blocks + 1, cfg.dropout,
                    up_time=i < last and temperal_upsample[i], up_space=i < last)
            for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:], strict=True))
        )  # fmt: skip
        out = dims[-1]
        self.head = nn.Sequential(
            RMSNorm(out, 3), nn.SiLU(), CausalConv3d(out, cfg.pixel_channels, 3, padding=1)
        )
        # After the last temporally upsampling stage nothing mixes frames except through the causal
        # cache, so the high-resolution tail can run ``frames_per_step`` frames at a time: the same
        # result, with a fraction of the activation memory (inference only). 0 disables the split;
        # None (default) means 1 on accelerators, where memory is what limits the resolution, and 0
        # on CPU, where small convolutions are slow and RAM is plentiful.
        temporal = [i for i in range(len(mult) - 1) if temperal_upsample[i]]
        self.split_at = temporal[-1] + 1 if temporal else 0
        self.frames_per_step: int | None = None

    def _tail(self, x: torch.Tensor, cache: FeatureCache | None, first_chunk: bool) -> torch.Tensor:
        for stage in self.upsamples[self.split_at :]:
            x = stage(x, cache, first_chunk)
        x = self.head[1](self.head[0](x))
        return cached_conv(self.head[2], x, cache)

    def forward(
        self, x: torch.Tensor, cache: FeatureCache | None = None, first_chunk: bool = False
    ) -> torch.Tensor:
        x = cached_conv(self.conv1, x, cache)
        for block in self.middle:
            x = block(x, cache)
        for stage in self.upsamples[: self.split_at]:
            x = stage(x, cache, first_chunk)
        step = self.frames_per_step
        if step is None:
            step = 0 if x.device.type == "cpu" else 1
        # with autograd every activation is kept for backward anyway: no point in splitting
        if cache is None or step <= 0 or x.shape[2] <= step or torch.is_grad_enabled():
            return self._tail(x, cache, first_chunk)
        start = cache.position
        pieces = []
        for piece in x.split(step, dim=2):
            cache.seek(start)  # every piece walks the same slots of the tail
            pieces.append(self._tail(piece, cache, first_chunk))
        return torch.cat(pieces, dim=2)


# --------------------------------------------------------------------------------------------
# The VAE
# --------------------------------------------------------------------------------------------


class Wan22VAE(nn.Module):
    """Wan2.2 VAE. ``encode``/``decode`` are the inference API (normalised latents, no grad)."""

    def __init__(self, config: Wan22VAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or Wan22VAEConfig()
        self.encoder = Encoder(cfg)
        self.conv1 = CausalConv3d(2 * cfg.z_dim, 2 * cfg.z_dim, 1)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder(cfg)

    # ---- normalisation -----------------------------------------------------------------
    # Copied from model.vae21.Wan21VAE._stats
    def _stats(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1/std) as [1, z, 1, 1, 1] tensors on ``ref``'s device, fp32 unless ref is fp64."""
        dtype = torch.float64 if ref.dtype == torch.float64 else torch.float32
        mean = torch.tensor(self.config.latents_mean, dtype=dtype, device=ref.device)
        inv_std = 1.0 / torch.tensor(self.config.latents_std, dtype=dtype, device=ref.device)
        return mean.view(1, -1, 1, 1, 1), inv_std.view(1, -1, 1, 1, 1)

    # Copied from model.vae21.Wan21VAE.normalize_latents
    def normalize_latents(self, mu: torch.Tensor) -> torch.Tensor:
        mean, inv_std = self._stats(mu)
        return ((mu.to(mean.dtype) - mean) * inv_std).to(mu.dtype)

    # Copied from model.vae21.Wan21VAE.denormalize_latents
    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        mean, inv_std = self._stats(z)
        return (z.to(mean.dtype) / inv_std + mean).to(z.dtype)

    # ---- encoding ----------------------------------------------------------------------
    def _param_dtype(self) -> torch.dtype:
        return self.conv1.weight.dtype

    def encode_distribution(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw (un-normalised) posterior ``(mu, logvar)`` of ``video`` [B, 3, F, H, W] in [-1, 1].

        Differentiable. H and W must be multiples of 16 (official sizes); frames past the last
        complete chunk of 4 are ignored, as upstream.
        """
        p = self.config.patch_size
        cache = FeatureCache()
        chunks = []
        n_lat = 1 + (video.shape[2] - 1) // 4
        for i in range(n_lat):
            cache.rewind()
            frames = video[:, :, :1] if i == 0 else video[:, :, 1 + 4 * (i - 1) : 1 + 4 * i]
            chunks.append(self.encoder(patchify(frames.to(self._param_dtype()), p), cache))
        moments = self.conv1(torch.cat(chunks, dim=2))
        mu, logvar = moments.chunk(2, dim=1)
        return mu, logvar

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``video`` [B, 3, 1+4k, H, W] in [-1, 1] -> normalised latent mean [B, z, 1+k, H/16, W/16]."""
        mu, _ = self.encode_distribution(video)
        return self.normalize_latents(mu)

    # ---- decoding ----------------------------------------------------------------------
    def decode_chunks(self, latents_raw: torch.Tensor) -> Iterator[torch.Tensor]:
        """Yield decoded RGB frames (unclamped) per latent frame of a *raw* latent: 1, then 4 each.

        Memory stays flat in the number of frames: only the causal cache is kept between chunks.
        """
        x = self.conv2(latents_raw.to(self._param_dtype()))
        cache = FeatureCache()
        for i in range(x.shape[2]):
            cache.rewind()
            yield unpatchify(
                self.decoder(x[:, :, i : i + 1], cache, first_chunk=i == 0), self.config.patch_size
            )

    # Copied from model.vae21.Wan21VAE.decode_latents
    def decode_latents(self, latents_raw: torch.Tensor) -> torch.Tensor:
        """Differentiable decode of a raw latent (training path); not clamped."""
        return torch.cat(list(self.decode_chunks(latents_raw)), dim=2)

    # Copied from model.vae21.Wan21VAE.decode (docstring adapted)
    @torch.no_grad()
    def decode(self, latents: torch.Tensor, out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Normalised ``latents`` [B, z, f, h, w] -> video [B, 3, 1+4(f-1), 16h, 16w] clamped to [-1, 1].

        The output is preallocated and filled chunk by chunk, so peak memory does not grow with f.
        """
        b, _, f, h, w = latents.shape
        s = self.config.scale_factor_spatial
        n_frames = 1 + self.config.scale_factor_temporal * (f - 1)
        out = torch.empty(b, 3, n_frames, h * s, w * s, dtype=out_dtype, device=latents.device)
        t = 0
        for chunk in self.decode_chunks(self.denormalize_latents(latents)):
            n = chunk.shape[2]
            out[:, :, t : t + n] = chunk.clamp_(-1.0, 1.0)
            t += n
        return out

    # ---- training ----------------------------------------------------------------------
    # Copied from model.vae21.Wan21VAE.forward
    def forward(
        self, video: torch.Tensor, sample_posterior: bool = False, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training forward: ``(reconstruction (unclamped), mu, logvar)``; mu/logvar are raw."""
        mu, logvar = self.encode_distribution(video)
        z = mu
        if sample_posterior:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + torch.exp(0.5 * logvar) * noise
        return self.decode_latents(z), mu, logvar


# --------------------------------------------------------------------------------------------
# key names: one table per renamed part (diffusers -> official), inverted for the other direction
# --------------------------------------------------------------------------------------------

# Copied from model.vae21._RES_INNER
_RES_INNER = {"norm1.gamma": "residual.0.gamma", "conv1": "residual.2", "norm2.gamma": "residual.3.gamma",
              "conv2": "residual.6", "conv_shortcut": "shortcut"}  # fmt: skip


# diffusers -> official names of the first/last layers of the encoder and decoder, and of the quant convs
# Copied from model.vae21._ENDS
_ENDS = {"conv_in": "conv1", "norm_out": "head.0", "conv_out": "head.2"}


# Copied from model.vae21._QUANT
_QUANT = {"quant_conv": "conv1", "post_quant_conv": "conv2"}


# Copied from model.vae21._alternatives
def _alternatives(table: Mapping[str, str]) -> str:
    """A regex group body matching any key of `table` literally."""
    return "|".join(re.escape(k) for k in table)


# Copied from model.vae21._resnet_inner
def _resnet_inner(rest: str) -> str:
    for theirs, ours in _RES_INNER.items():
        if rest == theirs or rest.startswith(theirs + "."):
            return ours + rest[len(theirs) :]
    return rest


# Copied from model.vae21._common_vae_key
def _common_vae_key(key: str) -> str | None:
    """Keys laid out the same way in both Wan VAEs; None when the key is stage-specific."""
    m = re.fullmatch(rf"(encoder|decoder)\.({_alternatives(_ENDS)})\.(.+)", key)
    if m:
        part, name, rest = m.groups()
        return f"{part}.{_ENDS[name]}.{rest}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key)
    if m:
        part, idx, rest = m.groups()
        return f"{part}.middle.{2 * int(idx)}.{_resnet_inner(rest)}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key)
    if m:
        return f"{m.group(1)}.middle.1.{m.group(2)}"
    m = re.fullmatch(rf"({_alternatives(_QUANT)})\.(.+)", key)
    if m:
        return f"{_QUANT[m.group(1)]}.{m.group(2)}"
    return None


_STAGE_KEY = r"(encoder\.down|decoder\.up)_blocks\.(\d+)\.(resnets\.(\d+)|downsampler|upsampler)\.(.+)"


def diffusers_to_official_vae22_keys(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a diffusers ``AutoencoderKLWan`` (Wan2.2, ``is_residual=True``) state dict to the
    official ``Wan2.2_VAE.pth`` names used by ``Wan22VAE``. Values are passed through untouched.
    Raises ``KeyError`` naming any key it does not understand."""
    enc = [re.fullmatch(r"encoder\.down_blocks\.\d+\.resnets\.(\d+)\..+", k) for k in sd]
    dec = [re.fullmatch(r"decoder\.up_blocks\.\d+\.resnets\.(\d+)\..+", k) for k in sd]
    n_enc = 1 + max((int(m.group(1)) for m in enc if m), default=-1)  # resnets per down stage
    n_dec = 1 + max((int(m.group(1)) for m in dec if m), default=-1)  # resnets per up stage
    out: dict[str, Any] = {}
    for key, value in sd.items():
        new = _common_vae_key(key)
        if new is None:
            m = re.fullmatch(_STAGE_KEY, key)
            if not m:
                raise KeyError(f"unexpected key in diffusers Wan2.2 VAE state dict: {key!r}")
            side, stage, what, j, rest = m.groups()
            parent = "encoder.downsamples" if side == "encoder.down" else "decoder.upsamples"
            child = parent.split(".")[1]
            if j is not None:
                new = f"{parent}.{stage}.{child}.{j}.{_resnet_inner(rest)}"
            else:
                idx = n_enc if side == "encoder.down" else n_dec
                new = f"{parent}.{stage}.{child}.{idx}.{rest}"
        out[new] = value
    return out


# Copied from model.vae21._RES_INNER_INV
_RES_INNER_INV = {ours: theirs for theirs, ours in _RES_INNER.items()}


# Copied from model.vae21._ENDS_INV
_ENDS_INV = {ours: theirs for theirs, ours in _ENDS.items()}


# Copied from model.vae21._QUANT_INV
_QUANT_INV = {ours: theirs for theirs, ours in _QUANT.items()}


# Copied from model.vae21._resnet_inner_inv
def _resnet_inner_inv(rest: str) -> str:
    for ours, theirs in _RES_INNER_INV.items():
        if rest == ours or rest.startswith(ours + "."):
            return theirs + rest[len(ours) :]
    return rest


# Copied from model.vae21._common_vae_key_inv
def _common_vae_key_inv(key: str) -> str | None:
    """Inverse of ``_common_vae_key``."""
    m = re.fullmatch(rf"(encoder|decoder)\.({_alternatives(_ENDS_INV)})\.(.+)", key)
    if m:
        part, name, rest = m.groups()
        return f"{part}.{_ENDS_INV[name]}.{rest}"
    m = re.fullmatch(r"(encoder|decoder)\.middle\.([012])\.(.+)", key)
    if m:
        part, idx, rest = m.groups()
        if idx == "1":
            return f"{part}.mid_block.attentions.0.{rest}"
        return f"{part}.mid_block.resnets.{int(idx) // 2}.{_resnet_inner_inv(rest)}"
    m = re.fullmatch(rf"({_alternatives(_QUANT_INV)})\.(.+)", key)
    if m:
        return f"{_QUANT_INV[m.group(1)]}.{m.group(2)}"
    return None


# Copied from model.vae21._is_resampler_key
def _is_resampler_key(rest: str) -> bool:
    return rest.startswith(("resample.", "time_conv."))


def official_to_diffusers_vae22_keys(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of ``diffusers_to_official_vae22_keys`` (official / ``Wan22VAE`` names -> diffusers)."""
    out: dict[str, Any] = {}
    for key, value in sd.items():
        new = _common_vae_key_inv(key)
        if new is None:
            m = re.fullmatch(r"(encoder\.downsamples|decoder\.upsamples)\.(\d+)\.\w+\.(\d+)\.(.+)", key)
            if not m:
                raise KeyError(f"unexpected key in official Wan2.2 VAE state dict: {key!r}")
            parent, stage, j, rest = m.groups()
            side = "encoder.down" if parent.startswith("encoder") else "decoder.up"
            if _is_resampler_key(rest):
                sampler = "downsampler" if side == "encoder.down" else "upsampler"
                new = f"{side}_blocks.{stage}.{sampler}.{rest}"
            else:
                new = f"{side}_blocks.{stage}.resnets.{j}.{_resnet_inner_inv(rest)}"
        out[new] = value
    return out


__all__ = [
    "WAN22_LATENTS_MEAN",
    "WAN22_LATENTS_STD",
    "Wan22VAE",
    "Wan22VAEConfig",
    "diffusers_to_official_vae22_keys",
    "official_to_diffusers_vae22_keys",
    "patchify",
    "unpatchify",
]
