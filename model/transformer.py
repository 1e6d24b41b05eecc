"""The Wan2.2 diffusion transformer (DiT), one file.

Reproduces the numerics of ``wan/modules/model.py`` (class ``WanModel``) in Wan-Video/Wan2.2 at commit
42bf4cf, written from the facts in ``shared/reference/wan22-architecture.md`` section 2:

- patch embedding: Conv3d with kernel = stride = patch (1, 2, 2); tokens in (f, h, w) row-major order;
- time: 256-wide sinusoid ``[cos | sin]`` of the raw timestep (0..1000) in float64, then
  ``time_embedding`` (Linear, SiLU, Linear) and ``time_projection`` (SiLU, Linear to 6*dim), all in fp32;
- text: ``text_embedding`` (Linear, GELU-tanh, Linear) over the zero-padded context; cross-attention
  uses no text mask, so padded rows carry the MLP's answer to a zero vector, exactly as upstream;
- blocks: self-attention with q/k RMSNorm over the full width (all heads jointly) and 3-D RoPE
  (head split 44/42/42 for t/h/w, interleaved pairs, float64 tables), cross-attention with q/k
  RMSNorm and no RoPE, GELU-tanh FFN; AdaLN modulation ``block.modulation + e0`` split into
  shift/scale/gate for attention and FFN (cross-attention is unmodulated);
- head: ``head.modulation + e`` (the unprojected time embedding) gives shift/scale, then a Linear
  to prod(patch) * out_dim, then unpatchify.

The fp32 islands of the original are kept: the time embedding and projection, the modulation
arithmetic, the gated residual updates (so the residual stream is fp32), LayerNorm and RMSNorm
statistics and the whole head run in float32 whatever the parameter dtype; the big matmuls
(q/k/v/o, FFN, text embedding) and attention run in the parameter dtype.

Beyond upstream:
- the per-token modulation tensor ``[B, L, 6, dim]`` is never built. Modulation is computed once
  per *distinct* timestep (TI2V has two: 0 for the first latent frame, t elsewhere) and applied
  to runs of consecutive tokens by broadcasting;
- a batch B > 1 (e.g. conditional + unconditional) runs in one forward and gives the same result
  as B separate passes (there is no padding: all samples share one latent size);
- the RoPE table per latent grid is cached, attention goes through
  ``torch.nn.functional.scaled_dot_product_attention`` or flash-attn when installed on CUDA.

Parameter names equal the official checkpoint keys, so official safetensors load without renaming;
``diffusers_to_official_transformer_keys`` maps the diffusers layout onto them.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "I2V_A14B",
    "T2V_A14B",
    "TI2V_5B",
    "TransformerConfig",
    "WanTransformer",
    "count_parameters",
    "diffusers_to_official_transformer_keys",
    "official_to_diffusers_transformer_keys",
]


def _find_flash_attn() -> Callable[..., Any] | None:
    """flash-attn 3 (``flash_attn_interface``) or 2 (``flash_attn``) if importable, else None."""
    try:
        from flash_attn_interface import flash_attn_func

        return flash_attn_func  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - any import failure (missing, CUDA mismatch) means "not available"
        pass
    try:
        from flash_attn import flash_attn_func

        return flash_attn_func  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001
        return None


_FLASH_ATTN = _find_flash_attn()


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture of one DiT, field names as in the official ``config.json``."""

    model_type: str = "t2v"  # "t2v" | "i2v" (needs y) | "ti2v" | "s2v"
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (t, h, w) conv kernel = stride
    text_len: int = 512  # context length the pipeline zero-pads to
    in_dim: int = 16  # input channels incl. y: 16 T2V, 36 I2V (16 + 4 mask + 16 image), 48 TI2V
    dim: int = 2048  # hidden width
    ffn_dim: int = 8192  # FFN hidden width
    freq_dim: int = 256  # timestep sinusoid width
    text_dim: int = 4096  # UMT5-XXL width
    out_dim: int = 16  # output channels (the VAE latent channels)
    num_heads: int = 16  # head_dim = dim / num_heads, 128 for every shipped model
    num_layers: int = 32
    eps: float = 1e-6  # LayerNorm / RMSNorm epsilon
    cross_attn_norm: bool = True  # affine LayerNorm (norm3) before cross-attention
    qk_norm: bool = True  # RMSNorm on q and k over the full width

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")
        if len(self.patch_size) != 3:
            raise ValueError(f"patch_size must have 3 entries, got {self.patch_size}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> TransformerConfig:
        """Build from an official ``config.json`` dict (unknown keys such as ``_class_name`` are ignored).

        A diffusers ``transformer/config.json`` (``WanTransformer3DModel``: ``num_attention_heads``,
        ``attention_head_dim``, ``in_channels``, ...) is recognised and translated too.
        """
        if "num_attention_heads" in d or "attention_head_dim" in d:
            return cls._from_diffusers(d)
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        if "patch_size" in kwargs:
            kwargs["patch_size"] = tuple(kwargs["patch_size"])
        return cls(**kwargs)

    @classmethod
    def _from_diffusers(cls, d: Mapping[str, Any]) -> TransformerConfig:
        if d.get("image_dim") or d.get("added_kv_proj_dim"):
            raise ValueError(
                "Wan2.1 image-conditioned transformers (image_dim/added_kv_proj_dim) are not Wan2.2"
            )
        heads = int(d.get("num_attention_heads", 40))
        in_dim = int(d.get("in_channels", 16))
        out_dim = int(d.get("out_channels") or in_dim)
        model_type = {36: "i2v", 48: "ti2v"}.get(in_dim, "t2v")
        return cls(
            model_type=model_type,
            patch_size=tuple(d.get("patch_size", (1, 2, 2))),
            in_dim=in_dim,
            dim=heads * int(d.get("attention_head_dim", 128)),
            ffn_dim=int(d.get("ffn_dim", 13824)),
            freq_dim=int(d.get("freq_dim", 256)),
            text_dim=int(d.get("text_dim", 4096)),
            out_dim=out_dim,
            num_heads=heads,
            num_layers=int(d.get("num_layers", 40)),
            eps=float(d.get("eps", 1e-6)),
            cross_attn_norm=bool(d.get("cross_attn_norm", True)),
            qk_norm=bool(d.get("qk_norm", True)),
        )


# Official configs (``config.json`` of each published checkpoint; A14B: per expert).
TI2V_5B = TransformerConfig(
    model_type="ti2v", in_dim=48, dim=3072, ffn_dim=14336, out_dim=48, num_heads=24, num_layers=30
)
T2V_A14B = TransformerConfig(
    model_type="t2v", in_dim=16, dim=5120, ffn_dim=13824, out_dim=16, num_heads=40, num_layers=40
)
I2V_A14B = replace(T2V_A14B, model_type="i2v", in_dim=36)


# --------------------------------------------------------------------------------------------------
# Small pieces: fp32 helpers, norms, timestep sinusoid, RoPE, attention
# --------------------------------------------------------------------------------------------------


def _linear_fp32(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer(x)`` for an ``nn.Linear`` in float32 whatever the parameter dtype (an fp32 island)."""
    assert isinstance(layer, nn.Linear)
    bias = None if layer.bias is None else layer.bias.float()
    return F.linear(x.float(), layer.weight.float(), bias)


class LayerNormFP32(nn.LayerNorm):
    """LayerNorm computed in float32; returns float32 (upstream ``WanLayerNorm``)."""

    def __init__(self, dim: int, eps: float, affine: bool = False) -> None:
        super().__init__(dim, eps=eps, elementwise_affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps)


class RMSNorm(nn.Module):
    """RMSNorm over the last axis: statistics in float32, cast back to the input dtype, times ``weight``."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:  # same numbers, one fused call
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype) * self.weight


def timestep_sinusoid(t: Tensor, dim: int) -> Tensor:
    """[K] raw timesteps (0..1000) -> [K, dim] float32 ``[cos | sin]``, computed in float64."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)  # [half]
    args = torch.outer(t.to(torch.float64), freqs)  # [K, half]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1).float()  # [K, dim]


class Rope3D:
    """3-D rotary position table, a plain object (not a module or buffer, so ``.to(dtype)`` never casts it).

    The head's ``c = head_dim / 2`` complex frequencies are split ``[c - 2(c//3), c//3, c//3]``
    (22/21/21 for head_dim 128, i.e. 44/42/42 real dims) between time, height and width; each axis
    uses ``theta^(-2j/n_axis)`` with its own width ``n_axis``. Angles ``pos * freq`` are float64 for
    positions 0..max_pos-1; the per-grid (cos, sin) table is cached per (grid, device).
    """

    def __init__(
        self, head_dim: int, max_pos: int = 1024, theta: float = 10000.0, cache_size: int = 8
    ) -> None:
        c = head_dim // 2
        self.splits = (c - 2 * (c // 3), c // 3, c // 3)
        self.max_pos = max_pos
        pos = torch.arange(max_pos, dtype=torch.float64, device="cpu")
        per_axis = []
        for n in self.splits:
            inv_freq = theta ** -(
                torch.arange(0, 2 * n, 2, dtype=torch.float64, device="cpu") / (2 * n)
            )  # [n]
            per_axis.append(torch.outer(pos, inv_freq))  # [max_pos, n]
        self.angles = torch.cat(per_axis, dim=1)  # [max_pos, c] float64, on CPU
        self._cache: OrderedDict[tuple[int, int, int, str], Tensor] = OrderedDict()
        self._cache_size = cache_size

    def table(self, grid: tuple[int, int, int], device: torch.device) -> Tensor:
        """[L, c, 2] float32 ``(cos, sin)`` pairs for a (f, h, w) patch grid, tokens in (f, h, w) order.

        Real pairs instead of complex numbers so that ``torch.compile`` traces a whole block
        (inductor has no complex kernels); the angles and their cos/sin are float64, then rounded.
        """
        key = (*grid, str(device))
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        f, h, w = grid
        if max(grid) > self.max_pos:
            raise ValueError(f"patch grid {grid} exceeds the RoPE table length {self.max_pos}")
        nt, nh, _ = self.splits
        a_t = self.angles[:f, :nt][:, None, None, :].expand(f, h, w, -1)  # [f, h, w, nt]
        a_h = self.angles[:h, nt : nt + nh][None, :, None, :].expand(f, h, w, -1)  # [f, h, w, nh]
        a_w = self.angles[:w, nt + nh :][None, None, :, :].expand(f, h, w, -1)  # [f, h, w, nw]
        angles = torch.cat([a_t, a_h, a_w], dim=-1).reshape(f * h * w, -1)  # [L, c]
        rot = torch.stack([angles.cos(), angles.sin()], dim=-1).float().to(device)  # [L, c, 2]
        self._cache[key] = rot
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return rot

    @staticmethod
    def apply(x: Tensor, rot: Tensor) -> Tensor:
        """Rotate interleaved pairs ``(x[2i], x[2i+1])`` of x [B, L, H, D] by rot [L, D/2, 2]; float32 out.

        The complex product ``(a + ib)(cos + i sin)`` written out in real arithmetic.
        """
        B, L, H, D = x.shape
        xp = x.float().reshape(B, L, H, D // 2, 2)  # [B, L, H, D/2, 2]
        a, b = xp[..., 0], xp[..., 1]  # each [B, L, H, D/2]
        cos, sin = rot[:, None, :, 0], rot[:, None, :, 1]  # each [L, 1, D/2]
        return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).reshape(B, L, H, D)


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention, 1/sqrt(head_dim) scale, no mask: [B, Lq, H, D] x [B, Lk, H, D] -> [B, Lq, H*D]."""
    if _FLASH_ATTN is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        res = _FLASH_ATTN(q, k, v)
        out: Tensor = res[0] if isinstance(res, tuple) else res  # flash-attn 3 may return (out, lse)
        return out.flatten(2)  # [B, Lq, H*D]
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    )  # [B, H, Lq, D]
    return out.transpose(1, 2).flatten(2)  # [B, Lq, H*D]


# --------------------------------------------------------------------------------------------------
# Timestep groups: modulation once per distinct timestep, broadcast over runs of tokens
# --------------------------------------------------------------------------------------------------


MAX_RUNS = 64  # more runs of equal timesteps than this: gather per token instead of slicing runs


@dataclass(frozen=True)
class Run:
    """Tokens ``start:end`` use ``values[idx[b]]`` in sample b; ``k`` is that index when all samples agree."""

    start: int
    end: int
    idx: Tensor  # [B] long, on the model's device
    k: int | None  # the common value index, or None


@dataclass
class TimestepGroups:
    """Which distinct timestep each token uses.

    ``values`` [K] are the distinct timesteps. Tokens are covered by ``runs`` of consecutive positions;
    a per-value table [K, dim] is applied to a run by broadcasting ``table[run.idx]`` [B, 1, dim] over
    it. With more than ``MAX_RUNS`` runs (an unusual per-token pattern) ``index`` [B, L] gathers per
    token instead. TI2V image mode has two runs (first latent frame at t = 0, the rest at t).
    """

    values: Tensor
    runs: list[Run] = field(default_factory=list)
    index: Tensor | None = None

    @classmethod
    def build(cls, t: Tensor, batch: int, seq_len: int, device: torch.device) -> TimestepGroups:
        if t.ndim == 0:
            t = t.reshape(1)
        if t.shape[0] == 1 and batch > 1:
            t = t.expand(batch, *t.shape[1:])
        if t.shape[0] != batch:
            raise ValueError(f"timestep batch {t.shape[0]} does not match the latent batch {batch}")
        if t.ndim == 2 and t.shape[1] != seq_len:
            raise ValueError(f"per-token timesteps must be [B, {seq_len}], got {tuple(t.shape)}")
        if t.ndim not in (1, 2):
            raise ValueError(f"timesteps must be [B] or [B, L], got {tuple(t.shape)}")
        if t.is_meta:  # shapes only: one value per sample, one run
            return cls(
                values=t[:, 0] if t.ndim == 2 else t,
                runs=[Run(0, seq_len, torch.arange(batch, device=device), None)],
            )
        values, inverse = torch.unique(t.detach().cpu(), return_inverse=True)  # [K], [B] or [B, L]
        if inverse.ndim == 1:  # one timestep per sample: one run over all tokens
            inverse = inverse[:, None].expand(batch, seq_len)  # [B, L] (a view)
            change = torch.zeros(seq_len - 1, dtype=torch.bool)
        else:
            change = (inverse[:, 1:] != inverse[:, :-1]).any(dim=0)  # [L-1] where any sample changes value
        starts = [0, *(torch.nonzero(change).flatten() + 1).tolist()]
        if len(starts) > MAX_RUNS:
            return cls(values=values, index=inverse.to(device))
        runs = []
        for s, e in zip(starts, [*starts[1:], seq_len], strict=True):
            idx = inverse[:, s]  # [B]
            k = int(idx[0]) if bool((idx == idx[0]).all()) else None
            runs.append(Run(s, e, idx.to(device), k))
        return cls(values=values, runs=runs)

    def take(self, rows: list[int]) -> TimestepGroups:
        """The groups of a subset of the batch (same ``values``, so per-value tables still index)."""
        if self.index is not None:
            return TimestepGroups(values=self.values, index=self.index[rows])
        runs = []
        for r in self.runs:
            idx = r.idx[rows]
            runs.append(Run(r.start, r.end, idx, r.k))
        return TimestepGroups(values=self.values, runs=runs)

    def _cat(self, parts: list[Tensor]) -> Tensor:
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # [B, L, dim]

    def norm_modulate(self, norm: LayerNormFP32, x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
        """``norm(x) * (1 + scale) + shift`` per token in fp32; x [B, L, dim], shift/scale [K, dim].

        Where a run has one timestep for the whole batch, the modulation is a per-channel affine
        and is fused into the LayerNorm call (saves two passes over the activations).
        """
        # (plain mul + add_ otherwise: a broadcasting torch.addcmul is ~100x slower on CPU)
        scale = 1 + scale
        if self.index is not None:
            normed: Tensor = norm(x)  # [B, L, dim]
            return (normed * scale[self.index]).add_(shift[self.index])  # gathered per token
        parts = []
        for r in self.runs:
            xr = x[:, r.start : r.end]  # [B, n, dim]
            if r.k is not None and norm.weight is None:
                parts.append(
                    F.layer_norm(xr.float(), norm.normalized_shape, scale[r.k], shift[r.k], norm.eps)
                )
            else:
                parts.append((norm(xr) * scale[r.idx][:, None]).add_(shift[r.idx][:, None]))
        return self._cat(parts)

    def gated_add(self, x: Tensor, y: Tensor, gate: Tensor) -> Tensor:
        """``x + y * gate`` per token in fp32; x [B, L, dim] fp32, y [B, L, dim] any dtype, gate [K, dim]."""
        if self.index is not None:
            return (y * gate[self.index]).add_(x)
        parts = []
        for r in self.runs:
            g = gate[r.k] if r.k is not None else gate[r.idx][:, None]  # [dim] or [B, 1, dim]
            parts.append((y[:, r.start : r.end] * g).add_(x[:, r.start : r.end]))
        return self._cat(parts)


# --------------------------------------------------------------------------------------------------
# Attention, block, head
# --------------------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Multi-head self-attention with full-width q/k RMSNorm and 3-D RoPE (upstream ``WanSelfAttention``)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.sp: Any = None  # `model.parallel.Ulysses` under sequence parallelism: x holds a token slice
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q: nn.Module = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k: nn.Module = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x: Tensor, rot: Tensor) -> Tensor:
        n = self.num_heads
        q = self.norm_q(self.q(x)).unflatten(2, (n, -1))  # [B, L, H, D]
        k = self.norm_k(self.k(x)).unflatten(2, (n, -1))  # [B, L, H, D]
        v = self.v(x).unflatten(2, (n, -1))  # [B, L, H, D]
        q = Rope3D.apply(q, rot).to(v.dtype)  # RoPE in fp32, attention in the compute dtype
        k = Rope3D.apply(k, rot).to(v.dtype)
        if self.sp is not None:  # all-to-all: attend over every rank's tokens, this rank's heads
            return self.o(self.sp.attention(q, k, v))  # type: ignore[no-any-return]  # [B, L/P, dim]
        return self.o(attention(q, k, v))  # type: ignore[no-any-return]  # [B, L, dim]


class CrossAttention(SelfAttention):
    """Video tokens attend to text tokens: q/k RMSNorm, no RoPE, no mask (upstream ``WanCrossAttention``)."""

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        n = self.num_heads
        q = self.norm_q(self.q(x)).unflatten(2, (n, -1))  # [B, L, H, D]
        k = self.norm_k(self.k(context)).unflatten(2, (n, -1))  # [B, Lc, H, D]
        v = self.v(context).unflatten(2, (n, -1))  # [B, Lc, H, D]
        return self.o(attention(q, k, v))  # type: ignore[no-any-return]  # [B, L, dim]


class WanAttentionBlock(nn.Module):
    """Modulated self-attention, unmodulated cross-attention, modulated FFN; residual stream in fp32."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.norm1 = LayerNormFP32(dim, cfg.eps)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm3: nn.Module = (
            LayerNormFP32(dim, cfg.eps, affine=True) if cfg.cross_attn_norm else nn.Identity()
        )
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm2 = LayerNormFP32(dim, cfg.eps)
        self.ffn = nn.Sequential(
            nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim)
        )
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x: Tensor, e0: Tensor, groups: TimestepGroups, context: Tensor, rot: Tensor) -> Tensor:
        """x [B, L, dim] fp32, e0 [K, 6, dim] fp32 (one row per distinct timestep), context [B, Lc, dim]."""
        dtype = self.modulation.dtype  # the compute dtype of the big matmuls (q.weight may be FP8)
        mod = self.modulation.float() + e0  # [K, 6, dim] fp32
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.unbind(1)  # each [K, dim]

        # 1. self-attention, modulated and gated
        h = groups.norm_modulate(self.norm1, x, shift1, scale1)  # [B, L, dim] fp32
        x = groups.gated_add(x, self.self_attn(h.to(dtype), rot), gate1)

        # 2. cross-attention to the text, no modulation, no gate
        x = x + self.cross_attn(self.norm3(x).to(dtype), context)

        # 3. feed-forward, modulated and gated
        h = groups.norm_modulate(self.norm2, x, shift2, scale2)  # [B, L, dim] fp32
        return groups.gated_add(x, self.ffn(h.to(dtype)), gate2)


class Head(nn.Module):
    """Final modulated LayerNorm and projection to patch pixels, all in fp32 (upstream ``Head``)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.norm = LayerNormFP32(cfg.dim, cfg.eps)
        self.head = nn.Linear(cfg.dim, math.prod(cfg.patch_size) * cfg.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: Tensor, e: Tensor, groups: TimestepGroups) -> Tensor:
        """x [B, L, dim] fp32, e [K, dim] fp32 time embedding -> [B, L, prod(patch) * out_dim] fp32."""
        shift, scale = (self.modulation.float() + e[:, None, :]).unbind(1)  # each [K, dim]
        return _linear_fp32(self.head, groups.norm_modulate(self.norm, x, shift, scale))


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


class WanTransformer(nn.Module):
    """Wan2.2 DiT. ``forward(x, t, context, y=None) -> [B, out_dim, F, H, W]`` float32.

    Build on ``torch.device("meta")`` and load with ``load_state_dict(sd, assign=True)`` to avoid
    initialising real-size weights; the RoPE table lives on the CPU and follows the input lazily.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(WanAttentionBlock(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        self.rope = Rope3D(cfg.head_dim)  # plain attribute: float64, never cast by .to(dtype)
        self.sp: Any = None  # `model.parallel.Ulysses`: each rank runs the blocks on a slice of the tokens
        self.init_weights()

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.patch_embedding.weight.device

    @torch.no_grad()
    def init_weights(self, zero_head: bool = False) -> None:
        """Upstream init: Xavier-uniform Linear/patch weights, zero biases, N(0, 0.02) for the text/time MLPs.

        Upstream also zeroes the head for training from scratch; that is opt-in here (``zero_head``)
        so that random tiny models produce non-trivial outputs.
        """
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        if self.patch_embedding.bias is not None:
            nn.init.zeros_(self.patch_embedding.bias)
        for seq in (self.text_embedding, self.time_embedding):
            for m in seq:
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.02)
        if zero_head:
            nn.init.zeros_(self.head.head.weight)

    def _embed_patches(self, x: Tensor) -> Tensor:
        """[B, C, F, H, W] -> [B, L, dim]: the Conv3d (kernel = stride) as one matmul over patches."""
        B, C, Fr, H, W = x.shape
        pt, ph, pw = self.cfg.patch_size
        f, h, w = Fr // pt, H // ph, W // pw
        x = x.reshape(B, C, f, pt, h, ph, w, pw)  # [B, C, f, pt, h, ph, w, pw]
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # [B, f, h, w, C, pt, ph, pw]
        x = x.reshape(B, f * h * w, C * pt * ph * pw)  # [B, L, C*pt*ph*pw]
        weight = self.patch_embedding.weight.flatten(1)  # [dim, C*pt*ph*pw]
        return F.linear(x, weight, self.patch_embedding.bias)  # [B, L, dim]

    def forward(
        self, x: Tensor, t: Tensor, context: Tensor, y: Tensor | None = None, *, cache: Any = None
    ) -> Tensor:
        """Predict the flow velocity.

        x: [B, C_x, F, H, W] latents; y: [B, C_y, F, H, W] conditioning concatenated on channels
        (C_x + C_y = in_dim); t: [B] or [B, L] per-token timesteps (L = F/pt * H/ph * W/pw, tokens
        in (f, h, w) order), raw values 0..1000; context: [B, Lc, text_dim] zero-padded text
        embeddings. ``cache``: a `model.cache.StepCache` that may skip blocks 1.. (or all) per sample.
        Returns [B, out_dim, F, H, W] float32.
        """
        cfg = self.cfg
        dtype, device = self.dtype, self.device
        if y is not None:
            x = torch.cat([x, y.to(x.dtype)], dim=1)  # [B, in_dim, F, H, W]
        elif cfg.model_type == "i2v":
            raise ValueError("an i2v transformer needs the conditioning y")
        B, C, Fr, H, W = x.shape
        pt, ph, pw = cfg.patch_size
        if C != cfg.in_dim or Fr % pt or H % ph or W % pw:
            raise ValueError(
                f"latent {tuple(x.shape)} does not fit in_dim {cfg.in_dim} / patch {cfg.patch_size}"
            )
        if context.shape[0] != B:
            raise ValueError(f"context batch {context.shape[0]} does not match the latent batch {B}")
        grid = (Fr // pt, H // ph, W // pw)
        L = math.prod(grid)

        # 1. patch embedding; the residual stream is fp32 from here on
        x = self._embed_patches(x.to(device, dtype)).float()  # [B, L, dim]
        rot = self.rope.table(grid, device)  # [L, head_dim/2, 2] float32 (cos, sin)
        sp = self.sp
        if sp is not None:  # sequence parallel: keep this rank's tokens, their RoPE rows and timesteps
            x, rot = sp.shard(x, 1), sp.shard(rot, 0)  # [B, L/P, dim], [L/P, head_dim/2, 2]
            if t.ndim == 2:
                t = sp.shard(t, 1)  # [B, L/P]
            L = x.shape[1]

        # 2. time embedding, once per distinct timestep (fp32 island)
        groups = TimestepGroups.build(t, B, L, device)
        sinus = timestep_sinusoid(groups.values, cfg.freq_dim).to(device)  # [K, freq_dim]
        e = _linear_fp32(self.time_embedding[0], sinus)  # [K, dim]
        e = _linear_fp32(self.time_embedding[2], F.silu(e))  # [K, dim]
        e0 = _linear_fp32(self.time_projection[1], F.silu(e)).reshape(-1, 6, cfg.dim)  # [K, 6, dim]

        # 3. text embedding over all (padded) positions
        context = self.text_embedding(context.to(device, dtype))  # [B, Lc, dim]

        # 4. transformer blocks
        if cache is not None and sp is not None:
            # each rank would judge its own token slice: ranks must take one decision, not yet wired
            raise ValueError("step caching is not supported with sequence parallelism")
        if cache is None:
            for block in self.blocks:
                x = block(x, e0, groups, context, rot)
        else:

            def run_blocks(h: Tensor, start: int, stop: int, rows: list[int] | None) -> Tensor:
                g, c = (groups, context) if rows is None else (groups.take(rows), context[rows])
                for block in self.blocks[start:stop]:
                    h = block(h, e0, g, c, rot)
                return h

            x = cache.run_blocks(x, e, e0, len(self.blocks), run_blocks)

        # 5. head and unpatchify
        out: Tensor = self.head(x, e, groups)  # [B, L, pt*ph*pw*out_dim] fp32
        if sp is not None:
            out = sp.gather(out, math.prod(grid))  # every rank's tokens -> [B, L_full, ...]
        f, h, w = grid
        out = out.reshape(B, f, h, w, pt, ph, pw, cfg.out_dim)  # [B, f, h, w, pt, ph, pw, C]
        out = out.permute(0, 7, 1, 4, 2, 5, 3, 6)  # [B, C, f, pt, h, ph, w, pw]
        return out.reshape(B, cfg.out_dim, Fr, H, W)  # [B, C, F, H, W]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# Key mapping between the official and the diffusers checkpoint layouts
# --------------------------------------------------------------------------------------------------

# official prefix -> diffusers prefix, for top-level names and for names inside ``blocks.N.``
_TOP_LEVEL = {
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.modulation": "scale_shift_table",
    "head.head": "proj_out",
}
_IN_BLOCK = {
    "modulation": "scale_shift_table",
    "norm3": "norm2",  # the affine cross-attention LayerNorm; official norm2 (FFN) has no parameters
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    **{
        f"self_attn.{a}": f"attn1.{b}"
        for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"))
    },
    **{
        f"cross_attn.{a}": f"attn2.{b}"
        for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"))
    },
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
}
_BLOCK_KEY = re.compile(r"^(blocks\.\d+\.)(.*)$")
_V = TypeVar("_V")


def _rename(name: str, table: Mapping[str, str]) -> str:
    for src, dst in table.items():
        if name == src or name.startswith(src + "."):
            return dst + name[len(src) :]
    return name


def _map_key(key: str, top: Mapping[str, str], block: Mapping[str, str]) -> str:
    m = _BLOCK_KEY.match(key)
    if m:
        return m.group(1) + _rename(m.group(2), block)
    return _rename(key, top)


def diffusers_to_official_transformer_keys(state_dict: Mapping[str, _V]) -> dict[str, _V]:
    """Rename a diffusers ``WanTransformer3DModel`` state dict to the official (our) keys; values untouched.

    A ComfyUI ``model.diffusion_model.`` prefix is stripped. Unknown keys pass through unchanged so
    that ``load_state_dict(strict=True)`` names them.
    """
    top = {v: k for k, v in _TOP_LEVEL.items()}
    block = {v: k for k, v in _IN_BLOCK.items()}
    out: dict[str, _V] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("model.diffusion_model.")
        out[_map_key(key, top, block)] = value
    return out


def official_to_diffusers_transformer_keys(state_dict: Mapping[str, _V]) -> dict[str, _V]:
    """Rename an official (our) state dict to diffusers ``WanTransformer3DModel`` keys; values untouched."""
    return {_map_key(k, _TOP_LEVEL, _IN_BLOCK): v for k, v in state_dict.items()}
