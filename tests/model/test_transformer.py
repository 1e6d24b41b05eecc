"""Tests for model/transformer.py: shapes, batching, key names, meta-device sizes, diffusers parity."""

from __future__ import annotations

import pytest
import torch

from model import transformer
from model.transformer import (
    I2V_A14B,
    T2V_A14B,
    TI2V_5B,
    TransformerConfig,
    WanTransformer,
    count_parameters,
    diffusers_to_official_transformer_keys,
    official_to_diffusers_transformer_keys,
)

TEXT_DIM = 32
TEXT_LEN = 24


def tiny_config(model_type: str = "t2v", in_dim: int = 16, out_dim: int = 16) -> TransformerConfig:
    return TransformerConfig(
        model_type=model_type,
        text_len=TEXT_LEN,
        in_dim=in_dim,
        dim=64,
        ffn_dim=128,
        text_dim=TEXT_DIM,
        out_dim=out_dim,
        num_heads=4,
        num_layers=2,
    )


def random_model(cfg: TransformerConfig, seed: int = 0) -> WanTransformer:
    """A model with every parameter re-randomised (norm weights and modulations included)."""
    torch.manual_seed(seed)
    model = WanTransformer(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if (
                name.endswith("norm_q.weight")
                or name.endswith("norm_k.weight")
                or name.endswith("norm3.weight")
            ):
                p.uniform_(0.5, 1.5)
            elif p.ndim == 1:
                p.normal_(0.0, 0.1)
            else:
                p.normal_(0.0, 1.0 / p[0].numel() ** 0.5)
    return model


def text_context(batch: int, true_len: int = 7, seed: int = 1) -> torch.Tensor:
    """Random embeddings trimmed to a true length, zero-padded to TEXT_LEN (as the pipeline does)."""
    g = torch.Generator().manual_seed(seed)
    ctx = torch.zeros(batch, TEXT_LEN, TEXT_DIM)
    ctx[:, :true_len] = torch.randn(batch, true_len, TEXT_DIM, generator=g)
    return ctx


def latents(
    batch: int, channels: int, frames: int = 3, h: int = 8, w: int = 12, seed: int = 2
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, frames, h, w, generator=g)


def first_frame_zero_timesteps(batch: int, t: float, frames: int, h: int, w: int) -> torch.Tensor:
    """TI2V per-token timesteps: 0 for the tokens of latent frame 0, t elsewhere. [B, L]."""
    per_frame = (h // 2) * (w // 2)
    ts = torch.full((batch, frames * per_frame), t)
    ts[:, :per_frame] = 0.0
    return ts


# --------------------------------------------------------------------------------------------------
# Config, names, sizes
# --------------------------------------------------------------------------------------------------


def test_from_json_dict_official_keys_and_unknown_keys() -> None:
    d = {
        "_class_name": "WanModel",
        "_diffusers_version": "0.33.0",
        "dim": 3072,
        "eps": 1e-06,
        "ffn_dim": 14336,
        "freq_dim": 256,
        "in_dim": 48,
        "model_type": "ti2v",
        "num_heads": 24,
        "num_layers": 30,
        "out_dim": 48,
        "text_len": 512,
    }
    assert TransformerConfig.from_json_dict(d) == TI2V_5B


def test_from_json_dict_diffusers_keys() -> None:
    d = {
        "_class_name": "WanTransformer3DModel",
        "patch_size": [1, 2, 2],
        "num_attention_heads": 40,
        "attention_head_dim": 128,
        "in_channels": 36,
        "out_channels": 16,
        "text_dim": 4096,
        "freq_dim": 256,
        "ffn_dim": 13824,
        "num_layers": 40,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "image_dim": None,
        "added_kv_proj_dim": None,
        "rope_max_seq_len": 1024,
    }
    assert TransformerConfig.from_json_dict(d) == I2V_A14B


def test_state_dict_keys_are_official() -> None:
    keys = set(WanTransformer(tiny_config()).state_dict())
    expected_top = {
        "patch_embedding.weight",
        "patch_embedding.bias",
        "text_embedding.0.weight",
        "text_embedding.2.bias",
        "time_embedding.0.weight",
        "time_embedding.2.weight",
        "time_projection.1.weight",
        "head.head.weight",
        "head.head.bias",
        "head.modulation",
    }
    block = {
        "modulation",
        "norm3.weight",
        "norm3.bias",
        "ffn.0.weight",
        "ffn.2.bias",
        *(f"{a}.{p}.{wb}" for a in ("self_attn", "cross_attn") for p in "qkvo" for wb in ("weight", "bias")),
        *(f"{a}.{n}.weight" for a in ("self_attn", "cross_attn") for n in ("norm_q", "norm_k")),
    }
    assert expected_top <= keys
    assert {f"blocks.1.{k}" for k in block} <= keys
    assert not any("norm1" in k or ".norm2" in k or "freqs" in k or "rope" in k for k in keys)
    assert len(keys) == 15 + 2 * 27  # as diffusers: 69 keys for 2 layers


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [(TI2V_5B, 5.000e9), (T2V_A14B, 14.29e9), (I2V_A14B, 14.29e9)],
    ids=["ti2v-5b", "t2v-a14b", "i2v-a14b"],
)
def test_real_config_sizes_on_meta(cfg: TransformerConfig, expected: float) -> None:
    with torch.device("meta"):
        model = WanTransformer(cfg)
    n = count_parameters(model)
    decimals = 3 if expected < 1e10 else 2
    assert round(n / 1e9, decimals) == round(expected / 1e9, decimals)
    assert all(p.is_meta for p in model.parameters())


def test_meta_forward_shape() -> None:
    with torch.device("meta"):
        model = WanTransformer(tiny_config())
        out = model(
            latents(1, 16).to("meta"), torch.tensor([500.0], device="meta"), text_context(1).to("meta")
        )
    assert out.shape == (1, 16, 3, 8, 12) and out.dtype == torch.float32


def test_rope_table_is_not_state_and_stays_float64() -> None:
    model = WanTransformer(tiny_config()).to(torch.bfloat16)
    assert model.rope.angles.dtype == torch.float64
    assert model.rope.splits == (4, 2, 2)  # head_dim 16: c = 8 -> [c - 2*(c//3), c//3, c//3]
    assert TI2V_5B.head_dim == T2V_A14B.head_dim == 128
    assert "rope" not in dict(model.named_buffers())


def test_rope_is_real_and_equals_the_complex_rotation() -> None:
    """Real (cos, sin) pairs, no complex dtype (torch.compile), same numbers as the complex product."""
    rope = transformer.Rope3D(16)
    rot = rope.table((2, 3, 4), torch.device("cpu"))
    assert rot.shape == (24, 8, 2) and rot.dtype == torch.float32 and not rot.is_complex()
    x = torch.randn(2, 24, 3, 16)
    grid = torch.cartesian_prod(torch.arange(2), torch.arange(3), torch.arange(4))  # [24, 3] (f, h, w)
    angles = torch.cat(
        [rope.angles[grid[:, 0], :4], rope.angles[grid[:, 1], 4:6], rope.angles[grid[:, 2], 6:]], dim=1
    )  # [24, 8] float64
    ref_rot = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)
    xc = torch.view_as_complex(x.reshape(2, 24, 3, 8, 2))  # [B, L, H, D/2]
    ref = torch.view_as_real(xc * ref_rot[:, None]).reshape(x.shape)
    torch.testing.assert_close(transformer.Rope3D.apply(x, rot), ref, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Behaviour
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
@pytest.mark.parametrize("timesteps", ["cfg-pair", "distinct", "per-token", "per-token-irregular"])
def test_batch_of_two_equals_two_passes(timesteps: str) -> None:
    cfg = tiny_config("ti2v", 48, 48)
    model = random_model(cfg)
    x, ctx = latents(2, 48), text_context(2)
    ctx[1] = 0.0  # e.g. an empty negative prompt
    if timesteps == "cfg-pair":  # cond + uncond: one timestep, given once and broadcast
        t = torch.tensor([731.0])
        x[1] = x[0]
    elif timesteps == "distinct":
        t = torch.tensor([731.0, 250.0])
    else:
        t = first_frame_zero_timesteps(2, 731.0, 3, 8, 12)
        if timesteps == "per-token-irregular":
            t[1, 50] = 12.0  # a different run pattern in one sample only
    both = model(x, t, ctx)
    one = model(x[:1], t[:1], ctx[:1])
    two = model(x[1:], t[-1:], ctx[1:])
    torch.testing.assert_close(both, torch.cat([one, two]), atol=1e-5, rtol=0)


@torch.no_grad()
def test_per_token_constant_equals_scalar_timestep() -> None:
    model = random_model(tiny_config())
    x, ctx = latents(1, 16), text_context(1)
    a = model(x, torch.tensor([640.0]), ctx)
    b = model(x, torch.full((1, 3 * 4 * 6), 640.0), ctx)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@torch.no_grad()
def test_gather_fallback_matches_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A per-token pattern with many runs falls back to gathering; it agrees with slicing the runs."""
    model = random_model(tiny_config("ti2v", 48, 48))
    x, ctx = latents(2, 48), text_context(2)
    L = 3 * 4 * 6
    t = torch.where(torch.arange(L) % 2 == 0, 900.0, 100.0).repeat(2, 1)  # 72 runs > MAX_RUNS
    t[1, :10] = 3.0
    gathered = model(x, t, ctx)
    monkeypatch.setattr(transformer, "MAX_RUNS", 10_000)
    sliced = model(x, t, ctx)
    torch.testing.assert_close(gathered, sliced, atol=1e-5, rtol=0)


@torch.no_grad()
def test_i2v_requires_y_and_checks_channels() -> None:
    model = WanTransformer(tiny_config("i2v", 36, 16))
    with pytest.raises(ValueError, match="needs the conditioning"):
        model(latents(1, 16), torch.tensor([1.0]), text_context(1))
    with pytest.raises(ValueError, match="in_dim"):
        model(latents(1, 16), torch.tensor([1.0]), text_context(1), y=latents(1, 16))
    out = model(latents(1, 16), torch.tensor([1.0]), text_context(1), y=latents(1, 20))
    assert out.shape == (1, 16, 3, 8, 12)


@torch.no_grad()
def test_bf16_runs_and_returns_float32() -> None:
    model = random_model(tiny_config())
    x, t, ctx = latents(1, 16), torch.tensor([500.0]), text_context(1)
    ref = model(x, t, ctx)
    out = model.to(torch.bfloat16)(x, t, ctx)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()


def test_key_mapping_round_trip() -> None:
    sd = WanTransformer(tiny_config()).state_dict()
    d = official_to_diffusers_transformer_keys(sd)
    assert "blocks.0.attn1.to_out.0.weight" in d and "blocks.0.norm2.bias" in d
    assert "scale_shift_table" in d and "blocks.1.scale_shift_table" in d and "proj_out.weight" in d
    back = diffusers_to_official_transformer_keys(d)
    assert list(back) == list(sd)
    comfy = diffusers_to_official_transformer_keys({f"model.diffusion_model.{k}": v for k, v in sd.items()})
    assert list(comfy) == list(sd)


# --------------------------------------------------------------------------------------------------
# Parity against diffusers' WanTransformer3DModel (fp32, CPU)
# --------------------------------------------------------------------------------------------------


def diffusers_twin(model: WanTransformer):  # type: ignore[no-untyped-def]
    diffusers = pytest.importorskip("diffusers")
    cfg = model.cfg
    ref = diffusers.WanTransformer3DModel(
        patch_size=cfg.patch_size,
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim,
        out_channels=cfg.out_dim,
        text_dim=cfg.text_dim,
        freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers,
        cross_attn_norm=cfg.cross_attn_norm,
        qk_norm="rms_norm_across_heads",
        eps=cfg.eps,
    ).eval()
    ref.load_state_dict(official_to_diffusers_transformer_keys(model.state_dict()), strict=True)
    return ref


@pytest.mark.parity
@pytest.mark.parametrize("task", ["t2v", "i2v", "ti2v", "ti2v-irregular"])
@pytest.mark.parametrize("batch", [1, 2])
@torch.no_grad()
def test_parity_with_diffusers(task: str, batch: int) -> None:
    channels = {"t2v": (16, 0, 16), "i2v": (16, 20, 16), "ti2v": (48, 0, 48), "ti2v-irregular": (48, 0, 48)}[
        task
    ]
    cx, cy, cout = channels
    model = random_model(tiny_config(task.split("-")[0], cx + cy, cout), seed=3)
    ref = diffusers_twin(model)
    x, ctx = latents(batch, cx), text_context(batch)
    y = latents(batch, cy, seed=4) if cy else None
    if task == "ti2v":
        t = first_frame_zero_timesteps(batch, 937.0, 3, 8, 12)
    elif task == "ti2v-irregular":  # every token its own timestep: the per-token gather path
        t = torch.randint(0, 1000, (batch, 3 * 4 * 6)).float()
    else:
        t = torch.tensor([937.0, 412.0][:batch])
    ours = model(x, t, ctx, y=y)
    theirs = ref(torch.cat([x, y], 1) if y is not None else x, t, ctx, return_dict=False)[0]
    assert ours.shape == theirs.shape == (batch, cout, 3, 8, 12)
    err = (ours - theirs).abs().max().item()
    assert err < 1e-4, f"max abs diff {err:.2e} (|ref| max {theirs.abs().max():.2f})"
