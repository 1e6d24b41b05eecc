"""Wan2.1 video VAE (z 16, 4x8x8 compression), used by T2V-A14B and I2V-A14B.

A causal 3-D convolutional VAE. Time is processed in chunks with a small per-convolution memory
(the last two input frames of every causal convolution), which makes chunked processing exactly
equal to causal processing of the whole clip:

* encode: frame 0 alone, then chunks of 4 frames -> one latent frame per chunk;
* decode: one latent frame at a time -> 1 video frame for latent frame 0, 4 for every later one.

Parameter names equal the keys of the official ``Wan2.1_VAE.pth`` (``encoder.conv1.weight``,
``encoder.downsamples.N...``, ``conv1``/``conv2``, ``decoder.upsamples.N...``), so official weights
load without renaming; ``diffusers_to_official_vae21_keys`` renames a diffusers ``AutoencoderKLWan``
state dict.

Public API: ``Wan21VAEConfig``, ``Wan21VAE`` (``encode``/``decode`` for inference,
``encode_distribution``/``decode_latents``/``forward`` for training with autograd),
``Wan21VAEConfig.from_diffusers_config`` / ``.from_state_dict``, ``diffusers_to_official_vae21_keys``
and its inverse ``official_to_diffusers_vae21_keys``.

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

# Official per-channel latent statistics of the Wan2.1 VAE (z_dim 16).
WAN21_LATENTS_MEAN: tuple[float, ...] = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENTS_STD: tuple[float, ...] = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass(frozen=True)
class Wan21VAEConfig:
    """Sizes of a Wan2.1-style VAE. The defaults are the official ones.

    ``latents_mean``/``latents_std`` default to the official constants when ``z_dim == 16`` and to
    zeros/ones otherwise; pass explicit tuples to override.
    """

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)
    dropout: float = 0.0
    latents_mean: tuple[float, ...] | None = field(default=None)
    latents_std: tuple[float, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("dim_mult", "attn_scales", "temperal_downsample"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.temperal_downsample) != len(self.dim_mult) - 1:
            raise ValueError("temperal_downsample needs len(dim_mult) - 1 entries")
        official = self.z_dim == len(WAN21_LATENTS_MEAN)
        mean = self.latents_mean
        std = self.latents_std
        if mean is None:
            mean = WAN21_LATENTS_MEAN if official else (0.0,) * self.z_dim
        if std is None:
            std = WAN21_LATENTS_STD if official else (1.0,) * self.z_dim
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if len(mean) != self.z_dim or len(std) != self.z_dim:
            raise ValueError(f"latents_mean/std need z_dim={self.z_dim} values")
        object.__setattr__(self, "latents_mean", mean)
        object.__setattr__(self, "latents_std", std)

    @property
    def scale_factor_temporal(self) -> int:
        return int(2 ** sum(self.temperal_downsample))

    @property
    def scale_factor_spatial(self) -> int:
        return int(2 ** (len(self.dim_mult) - 1))

    @classmethod
    def from_diffusers_config(cls, cfg: Mapping[str, Any]) -> Wan21VAEConfig:
        """Build from a diffusers ``AutoencoderKLWan`` ``config.json`` dict (unknown keys ignored)."""
        if cfg.get("is_residual", False):
            raise ValueError("is_residual=True is the Wan2.2 VAE; use Wan22VAEConfig")
        kw: dict[str, Any] = {}
        for ours, theirs in (
            ("dim", "base_dim"), ("z_dim", "z_dim"), ("dim_mult", "dim_mult"),
            ("num_res_blocks", "num_res_blocks"), ("attn_scales", "attn_scales"),
            ("temperal_downsample", "temperal_downsample"), ("dropout", "dropout"),
            ("latents_mean", "latents_mean"), ("latents_std", "latents_std"),
        ):  # fmt: skip
            if cfg.get(theirs) is not None:
                kw[ours] = cfg[theirs]
        return cls(**kw)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, Any], **overrides: Any) -> Wan21VAEConfig:
        """Infer the sizes from an official-layout state dict (tensor shapes only; meta is fine).

        ``latents_mean``/``latents_std`` cannot be inferred: they follow the z_dim rule above
        unless given in ``overrides``. Attention inside the stages (non-empty ``attn_scales``) is
        not inferred.
        """
        dim = int(sd["encoder.conv1.weight"].shape[0])
        widths: list[int] = []  # output width of every encoder res block, in order
        down: list[bool] = []  # one entry per resampler: does it also downsample time?
        blocks_per_level = 0
        idx = 0
        while (
            f"encoder.downsamples.{idx}.residual.2.weight" in sd
            or f"encoder.downsamples.{idx}.resample.1.weight" in sd
        ):
            if f"encoder.downsamples.{idx}.resample.1.weight" in sd:
                down.append(f"encoder.downsamples.{idx}.time_conv.weight" in sd)
                blocks_per_level = blocks_per_level or len(widths)
            else:
                widths.append(int(sd[f"encoder.downsamples.{idx}.residual.2.weight"].shape[0]))
            idx += 1
        blocks_per_level = blocks_per_level or len(widths)
        kw: dict[str, Any] = {
            "dim": dim,
            "z_dim": int(sd["conv2.weight"].shape[0]),
            "num_res_blocks": blocks_per_level,
            "dim_mult": tuple(w // dim for w in widths[blocks_per_level - 1 :: blocks_per_level]),
            "temperal_downsample": tuple(down),
        }
        kw.update(overrides)
        return cls(**kw)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


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


def frame_tail(x: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
    """The last ``CACHE_T`` frames of ``x``, topped up from ``prev`` when the chunk is shorter."""
    tail = x[:, :, -CACHE_T:].clone()
    if tail.shape[2] < CACHE_T and prev is not None:
        tail = torch.cat([prev[:, :, -1:].to(tail), tail], dim=2)
    return tail


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


def cached_conv(conv: CausalConv3d, x: torch.Tensor, cache: FeatureCache | None) -> torch.Tensor:
    """Run ``conv`` on a chunk, using and then updating its slot of ``cache``."""
    if cache is None:
        return conv(x)
    prev = cache.peek()
    cache.push(frame_tail(x, prev))
    return conv(x, prev)


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


class Upsample2x(nn.Module):
    """Nearest-exact 2x spatial upsampling of [N, C, H, W] (computed in fp32, cast back)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.float(), scale_factor=2.0, mode="nearest-exact").to(x.dtype)


_FIRST = "first-chunk"  # cache marker: the temporal upsampler skipped latent frame 0


def per_frame(fn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D module to every frame of [B, C, T, H, W]."""
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


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


# --------------------------------------------------------------------------------------------
# Encoder / decoder
# --------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self, cfg: Wan21VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        scale = 1.0
        last = len(cfg.dim_mult) - 1
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResidualBlock(cin, cout, cfg.dropout))
                if scale in cfg.attn_scales:
                    blocks.append(AttentionBlock(cout))
                cin = cout
            if i != last:
                blocks.append(
                    Resample(cout, "downsample3d" if cfg.temperal_downsample[i] else "downsample2d")
                )
                scale /= 2.0
        self.downsamples = nn.ModuleList(blocks)
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
    def __init__(self, cfg: Wan21VAEConfig) -> None:
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.dim * m for m in (mult[-1], *mult[::-1])]
        temperal_upsample = cfg.temperal_downsample[::-1]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = nn.ModuleList(
            [ResidualBlock(dims[0], dims[0], cfg.dropout), AttentionBlock(dims[0]),
             ResidualBlock(dims[0], dims[0], cfg.dropout)]
        )  # fmt: skip
        blocks: list[nn.Module] = []
        scale = 1.0 / 2 ** (len(mult) - 2)
        last = len(mult) - 1
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            if i > 0:  # the previous upsampler halved the width
                cin = cin // 2
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResidualBlock(cin, cout, cfg.dropout))
                if scale in cfg.attn_scales:
                    blocks.append(AttentionBlock(cout))
                cin = cout
            if i != last:
                blocks.append(Resample(cout, "upsample3d" if temperal_upsample[i] else "upsample2d"))
                scale *= 2.0
        self.upsamples = nn.ModuleList(blocks)
        out = dims[-1]
        self.head = nn.Sequential(RMSNorm(out, 3), nn.SiLU(), CausalConv3d(out, 3, 3, padding=1))
        # After the last temporal upsampler nothing mixes frames except through the causal cache,
        # so the high-resolution tail can run ``frames_per_step`` frames at a time: the same
        # result, with a fraction of the activation memory (inference only). 0 disables the split;
        # None (default) means 1 on accelerators, where memory is what limits the resolution, and 0
        # on CPU, where small convolutions are slow and RAM is plentiful.
        temporal = [i for i, b in enumerate(blocks) if isinstance(b, Resample) and b.mode == "upsample3d"]
        self.split_at = temporal[-1] + 1 if temporal else 0
        self.frames_per_step: int | None = None

    def _tail(self, x: torch.Tensor, cache: FeatureCache | None) -> torch.Tensor:
        for block in self.upsamples[self.split_at :]:
            x = block(x, cache)
        x = self.head[1](self.head[0](x))
        return cached_conv(self.head[2], x, cache)

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        x = cached_conv(self.conv1, x, cache)
        for block in (*self.middle, *self.upsamples[: self.split_at]):
            x = block(x, cache)
        step = self.frames_per_step
        if step is None:
            step = 0 if x.device.type == "cpu" else 1
        # with autograd every activation is kept for backward anyway: no point in splitting
        if cache is None or step <= 0 or x.shape[2] <= step or torch.is_grad_enabled():
            return self._tail(x, cache)
        start = cache.position
        pieces = []
        for piece in x.split(step, dim=2):
            cache.seek(start)  # every piece walks the same slots of the tail
            pieces.append(self._tail(piece, cache))
        return torch.cat(pieces, dim=2)


# --------------------------------------------------------------------------------------------
# The VAE
# --------------------------------------------------------------------------------------------


class Wan21VAE(nn.Module):
    """Wan2.1 VAE. ``encode``/``decode`` are the inference API (normalised latents, no grad)."""

    def __init__(self, config: Wan21VAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or Wan21VAEConfig()
        self.encoder = Encoder(cfg)
        self.conv1 = CausalConv3d(2 * cfg.z_dim, 2 * cfg.z_dim, 1)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder(cfg)

    # ---- normalisation -----------------------------------------------------------------
    def _stats(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1/std) as [1, z, 1, 1, 1] tensors on ``ref``'s device, fp32 unless ref is fp64."""
        dtype = torch.float64 if ref.dtype == torch.float64 else torch.float32
        mean = torch.tensor(self.config.latents_mean, dtype=dtype, device=ref.device)
        inv_std = 1.0 / torch.tensor(self.config.latents_std, dtype=dtype, device=ref.device)
        return mean.view(1, -1, 1, 1, 1), inv_std.view(1, -1, 1, 1, 1)

    def normalize_latents(self, mu: torch.Tensor) -> torch.Tensor:
        mean, inv_std = self._stats(mu)
        return ((mu.to(mean.dtype) - mean) * inv_std).to(mu.dtype)

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        mean, inv_std = self._stats(z)
        return (z.to(mean.dtype) / inv_std + mean).to(z.dtype)

    # ---- encoding ----------------------------------------------------------------------
    def _param_dtype(self) -> torch.dtype:
        return self.conv1.weight.dtype

    def encode_distribution(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw (un-normalised) posterior ``(mu, logvar)`` of ``video`` [B, 3, F, H, W] in [-1, 1].

        Differentiable. Frames past the last complete chunk of 4 are ignored, as upstream.
        """
        x = video.to(self._param_dtype())
        cache = FeatureCache()
        chunks = []
        n_lat = 1 + (x.shape[2] - 1) // 4
        for i in range(n_lat):
            cache.rewind()
            frames = x[:, :, :1] if i == 0 else x[:, :, 1 + 4 * (i - 1) : 1 + 4 * i]
            chunks.append(self.encoder(frames, cache))
        moments = self.conv1(torch.cat(chunks, dim=2))
        mu, logvar = moments.chunk(2, dim=1)
        return mu, logvar

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``video`` [B, 3, 1+4k, H, W] in [-1, 1] -> normalised latent mean [B, z, 1+k, H/8, W/8]."""
        mu, _ = self.encode_distribution(video)
        return self.normalize_latents(mu)

    # ---- decoding ----------------------------------------------------------------------
    def decode_chunks(self, latents_raw: torch.Tensor) -> Iterator[torch.Tensor]:
        """Yield decoded (unclamped) frames per latent frame of a *raw* latent: 1, then 4 each.

        Memory stays flat in the number of frames: only the causal cache is kept between chunks.
        """
        x = self.conv2(latents_raw.to(self._param_dtype()))
        cache = FeatureCache()
        for i in range(x.shape[2]):
            cache.rewind()
            yield self.decoder(x[:, :, i : i + 1], cache)

    def decode_latents(self, latents_raw: torch.Tensor) -> torch.Tensor:
        """Differentiable decode of a raw latent (training path); not clamped."""
        return torch.cat(list(self.decode_chunks(latents_raw)), dim=2)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Normalised ``latents`` [B, z, f, h, w] -> video [B, 3, 1+4(f-1), 8h, 8w] clamped to [-1, 1].

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

_RES_INNER = {"norm1.gamma": "residual.0.gamma", "conv1": "residual.2", "norm2.gamma": "residual.3.gamma",
              "conv2": "residual.6", "conv_shortcut": "shortcut"}  # fmt: skip


# diffusers -> official names of the first/last layers of the encoder and decoder, and of the quant convs
_ENDS = {"conv_in": "conv1", "norm_out": "head.0", "conv_out": "head.2"}


_QUANT = {"quant_conv": "conv1", "post_quant_conv": "conv2"}


def _alternatives(table: Mapping[str, str]) -> str:
    """A regex group body matching any key of `table` literally."""
    return "|".join(re.escape(k) for k in table)


def _resnet_inner(rest: str) -> str:
    for theirs, ours in _RES_INNER.items():
        if rest == theirs or rest.startswith(theirs + "."):
            return ours + rest[len(theirs) :]
    return rest


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


def diffusers_to_official_vae21_keys(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a diffusers ``AutoencoderKLWan`` (Wan2.1, ``is_residual=False``) state dict to the
    official ``Wan2.1_VAE.pth`` names used by ``Wan21VAE``. Values are passed through untouched.
    Raises ``KeyError`` naming any key it does not understand."""
    up = [re.fullmatch(r"decoder\.up_blocks\.\d+\.resnets\.(\d+)\..+", k) for k in sd]
    per_stage = 1 + max((int(m.group(1)) for m in up if m), default=-1)  # resnets per up block
    out: dict[str, Any] = {}
    for key, value in sd.items():
        new = _common_vae_key(key)
        if new is None:
            m = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.(.+)", key)
            m2 = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key)
            m3 = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key)
            if m:
                new = f"encoder.downsamples.{m.group(1)}.{_resnet_inner(m.group(2))}"
            elif m2:
                i, j, rest = int(m2.group(1)), int(m2.group(2)), m2.group(3)
                new = f"decoder.upsamples.{i * (per_stage + 1) + j}.{_resnet_inner(rest)}"
            elif m3:
                i, rest = int(m3.group(1)), m3.group(2)
                new = f"decoder.upsamples.{i * (per_stage + 1) + per_stage}.{rest}"
            else:
                raise KeyError(f"unexpected key in diffusers Wan2.1 VAE state dict: {key!r}")
        out[new] = value
    return out


_RES_INNER_INV = {ours: theirs for theirs, ours in _RES_INNER.items()}


_ENDS_INV = {ours: theirs for theirs, ours in _ENDS.items()}


_QUANT_INV = {ours: theirs for theirs, ours in _QUANT.items()}


def _resnet_inner_inv(rest: str) -> str:
    for ours, theirs in _RES_INNER_INV.items():
        if rest == ours or rest.startswith(ours + "."):
            return theirs + rest[len(ours) :]
    return rest


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


def _is_resampler_key(rest: str) -> bool:
    return rest.startswith(("resample.", "time_conv."))


def official_to_diffusers_vae21_keys(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of ``diffusers_to_official_vae21_keys`` (official / ``Wan21VAE`` names -> diffusers)."""
    samplers = [re.fullmatch(r"decoder\.upsamples\.(\d+)\.(.+)", k) for k in sd]
    per_stage = min((int(m.group(1)) for m in samplers if m and _is_resampler_key(m.group(2))), default=0)
    out: dict[str, Any] = {}
    for key, value in sd.items():
        new = _common_vae_key_inv(key)
        if new is None:
            m = re.fullmatch(r"encoder\.downsamples\.(\d+)\.(.+)", key)
            m2 = re.fullmatch(r"decoder\.upsamples\.(\d+)\.(.+)", key)
            if m:
                new = f"encoder.down_blocks.{m.group(1)}.{_resnet_inner_inv(m.group(2))}"
            elif m2:
                block, j = divmod(int(m2.group(1)), per_stage + 1)
                rest = m2.group(2)
                if _is_resampler_key(rest):
                    new = f"decoder.up_blocks.{block}.upsamplers.0.{rest}"
                else:
                    new = f"decoder.up_blocks.{block}.resnets.{j}.{_resnet_inner_inv(rest)}"
            else:
                raise KeyError(f"unexpected key in official Wan2.1 VAE state dict: {key!r}")
        out[new] = value
    return out


__all__ = [
    "WAN21_LATENTS_MEAN",
    "WAN21_LATENTS_STD",
    "Wan21VAE",
    "Wan21VAEConfig",
    "diffusers_to_official_vae21_keys",
    "official_to_diffusers_vae21_keys",
]
