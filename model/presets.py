"""Model presets: the defaults and constraints of every model id wanserve can serve.

The official values come from the Wan2.2 task configs (`wan/configs/wan_t2v_A14B.py`,
`wan_i2v_A14B.py`, `wan_ti2v_5B.py`, `shared_config.py` at commit 42bf4cf):

| model id        | sizes (W, H)       | frames | fps | steps | shift | guidance (low, high) | boundary |
|-----------------|--------------------|--------|-----|-------|-------|----------------------|----------|
| wan2.2-t2v-a14b | 1280x720, 832x480* | 81     | 16  | 40    | 12.0  | (3.0, 4.0)           | 0.875    |
| wan2.2-i2v-a14b | same               | 81     | 16  | 40    | 5.0   | (3.5, 3.5)           | 0.900    |
| wan2.2-ti2v-5b  | 1280x704*          | 121    | 24  | 50    | 5.0   | 5.0                  | -        |

(* and the portrait transposes.)

`ModelPreset` is what workers publish (as JSON) to the gateway; it must stay JSON-able through
`dataclasses.asdict`. The tiny presets (`tiny-*`) describe randomly initialised toy models that
`model.loading` builds from `TINY_SPECS` with a fixed seed, for tests and CPU runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BUILTIN_CHECKPOINTS",
    "DEMO_LORA_DIR",
    "DEMO_WEIGHTS_DIR",
    "OFFICIAL_NEGATIVE_PROMPT",
    "PRESETS",
    "TINY_SPECS",
    "ModelPreset",
    "TinySpec",
    "get_preset",
    "register_preset",
]

# `sample_neg_prompt` of `wan/configs/shared_config.py`, verbatim (a data value; it changes outputs).
OFFICIAL_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)

SAMPLERS: tuple[str, ...] = ("unipc", "dpm++", "euler", "distill")


WAN_EXAMPLE_PROMPTS: tuple[str, ...] = (
    "A corgi running on a beach at sunset, waves rolling in, warm backlight",
    "Two cats in boxing gloves spar on a spotlit stage, slow motion",
    "A paper boat drifts down a rain-soaked street, close-up, reflections of neon signs",
)


@dataclass(frozen=True)
class ModelPreset:
    """Defaults and constraints of one model id (see docs/architecture.md)."""

    model_id: str
    task: str  # "t2v" | "i2v" | "ti2v"
    image_input: str  # "none" | "required" | "optional"
    sizes: tuple[tuple[int, int], ...]  # supported (width, height)
    default_size: tuple[int, int]  # (width, height)
    default_num_frames: int  # 4n+1
    min_num_frames: int
    max_num_frames: int
    fps: int
    default_num_steps: int
    max_num_steps: int
    default_shift: float
    default_guidance_scale: tuple[float, ...]  # (g,) one expert; (low_noise, high_noise) for A14B
    boundary: float | None  # MoE switch (t >= boundary * 1000 -> high-noise expert)
    default_sampler: str = "unipc"
    samplers: tuple[str, ...] = SAMPLERS
    negative_prompt: str = OFFICIAL_NEGATIVE_PROMPT
    vae_stride: tuple[int, int, int] = (4, 8, 8)  # (t, h, w) compression
    patch_size: tuple[int, int, int] = (1, 2, 2)
    # prompts this model renders well; `/v1/models` publishes them and the web page suggests them
    example_prompts: tuple[str, ...] = WAN_EXAMPLE_PROMPTS

    @property
    def num_experts(self) -> int:
        return 2 if self.boundary is not None else 1

    @property
    def spatial_multiple(self) -> int:
        """Height and width must be multiples of this (VAE stride times DiT patch)."""
        return self.vae_stride[1] * self.patch_size[1]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelPreset:
        """Inverse of `to_dict` (JSON turns tuples into lists; turn them back)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in names}
        kw["sizes"] = tuple(tuple(s) for s in kw["sizes"])
        for k in (
            "default_size",
            "default_guidance_scale",
            "samplers",
            "vae_stride",
            "patch_size",
            "example_prompts",
        ):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


_A14B_SIZES: tuple[tuple[int, int], ...] = ((1280, 720), (720, 1280), (832, 480), (480, 832))
_TINY_SIZES_16: tuple[tuple[int, int], ...] = ((32, 32), (48, 32), (32, 48), (64, 64))
_TINY_SIZES_32: tuple[tuple[int, int], ...] = ((32, 32), (64, 32), (32, 64), (64, 64))

WAN22_T2V_A14B = ModelPreset(
    model_id="wan2.2-t2v-a14b",
    task="t2v",
    image_input="none",
    sizes=_A14B_SIZES,
    default_size=(1280, 720),
    default_num_frames=81,
    min_num_frames=5,
    max_num_frames=81,
    fps=16,
    default_num_steps=40,
    max_num_steps=100,
    default_shift=12.0,
    default_guidance_scale=(3.0, 4.0),
    boundary=0.875,
)

WAN22_I2V_A14B = dataclasses.replace(
    WAN22_T2V_A14B,
    model_id="wan2.2-i2v-a14b",
    task="i2v",
    image_input="required",
    default_shift=5.0,
    default_guidance_scale=(3.5, 3.5),
    boundary=0.900,
)

WAN22_TI2V_5B = ModelPreset(
    model_id="wan2.2-ti2v-5b",
    task="ti2v",
    image_input="optional",
    sizes=((1280, 704), (704, 1280)),
    default_size=(1280, 704),
    default_num_frames=121,
    min_num_frames=5,
    max_num_frames=121,
    fps=24,
    default_num_steps=50,
    max_num_steps=100,
    default_shift=5.0,
    default_guidance_scale=(5.0,),
    boundary=None,
    vae_stride=(4, 16, 16),
)

_TINY_COMMON: dict[str, Any] = dict(
    default_size=(32, 32),
    default_num_frames=5,
    min_num_frames=1,
    max_num_frames=17,
    default_num_steps=4,
    max_num_steps=50,
)

TINY_T2V_A14B = dataclasses.replace(
    WAN22_T2V_A14B, model_id="tiny-t2v-a14b", sizes=_TINY_SIZES_16, **_TINY_COMMON
)
TINY_I2V_A14B = dataclasses.replace(
    WAN22_I2V_A14B, model_id="tiny-i2v-a14b", sizes=_TINY_SIZES_16, **_TINY_COMMON
)
TINY_TI2V = dataclasses.replace(WAN22_TI2V_5B, model_id="tiny-ti2v", sizes=_TINY_SIZES_32, **_TINY_COMMON)
# Same shapes with 4 heads (head_dim 8), so sequence-parallel tests can split heads over 2 or 4 ranks.
TINY_T2V_A14B_H4 = dataclasses.replace(TINY_T2V_A14B, model_id="tiny-t2v-a14b-h4")
TINY_I2V_A14B_H4 = dataclasses.replace(TINY_I2V_A14B, model_id="tiny-i2v-a14b-h4")
TINY_TI2V_H4 = dataclasses.replace(TINY_TI2V, model_id="tiny-ti2v-h4")


@dataclass(frozen=True)
class TinySpec:
    """How to build a tiny random model: component configs as plain dicts, plus the init seed.

    `transformer` holds `TransformerConfig` fields; `vae` holds `Wan21VAEConfig` /
    `Wan22VAEConfig` overrides (unknown names are ignored); `text_encoder` holds
    `transformers.UMT5Config` arguments (the tokenizer is the byte tokenizer, 384 ids).
    """

    vae_kind: str  # "wan2.1" | "wan2.2"
    transformer: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any] = field(
        default_factory=lambda: dict(
            vocab_size=384,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=128,
            dropout_rate=0.0,
            feed_forward_proj="gated-gelu",
            layer_norm_epsilon=1e-6,
        )
    )
    seed: int = 0


def _tiny_dit(model_type: str, in_dim: int, out_dim: int, num_heads: int = 2) -> dict[str, Any]:
    return dict(
        model_type=model_type,
        patch_size=(1, 2, 2),
        text_len=512,
        in_dim=in_dim,
        dim=32,
        ffn_dim=64,
        freq_dim=256,
        text_dim=32,
        out_dim=out_dim,
        num_heads=num_heads,
        num_layers=2,
        eps=1e-6,
        cross_attn_norm=True,
        qk_norm=True,
    )


# Tiny VAEs keep the official strides ((4, 8, 8) and (4, 16, 16)) with a very small width.
_TINY_VAE21: dict[str, Any] = dict(dim=4, z_dim=16, dim_mult=(1, 1, 1, 1), num_res_blocks=1)
_TINY_VAE22: dict[str, Any] = dict(dim=4, dec_dim=4, z_dim=48, dim_mult=(1, 1, 1, 1), num_res_blocks=1)

TINY_SPECS: dict[str, TinySpec] = {
    "tiny-t2v-a14b": TinySpec("wan2.1", _tiny_dit("t2v", 16, 16), _TINY_VAE21, seed=1),
    "tiny-i2v-a14b": TinySpec("wan2.1", _tiny_dit("i2v", 36, 16), _TINY_VAE21, seed=2),
    "tiny-ti2v": TinySpec("wan2.2", _tiny_dit("ti2v", 48, 48), _TINY_VAE22, seed=3),
    "tiny-t2v-a14b-h4": TinySpec("wan2.1", _tiny_dit("t2v", 16, 16, 4), _TINY_VAE21, seed=1),
    "tiny-i2v-a14b-h4": TinySpec("wan2.1", _tiny_dit("i2v", 36, 16, 4), _TINY_VAE21, seed=2),
    "tiny-ti2v-h4": TinySpec("wan2.2", _tiny_dit("ti2v", 48, 48, 4), _TINY_VAE22, seed=3),
}

# The built-in demo model, so a fresh install serves real videos without a 20 GB download: a tiny
# TI2V model trained on a procedural world of coloured shapes by `training/train_demo.py`; its
# weights ship inside the package (see BUILTIN_CHECKPOINTS).
WANSERVE_DEMO = ModelPreset(
    model_id="wanserve-demo",
    task="ti2v",
    image_input="optional",
    sizes=((32, 32),),
    default_size=(32, 32),
    default_num_frames=9,
    min_num_frames=5,
    max_num_frames=17,
    fps=8,
    default_num_steps=20,
    max_num_steps=50,
    default_shift=2.0,
    default_guidance_scale=(6.0,),
    boundary=None,
    negative_prompt="",
    vae_stride=(2, 4, 4),
    patch_size=(1, 2, 2),
    # the demo knows coloured shapes moving in a direction (model/demo/world.py), nothing else
    example_prompts=(
        "a red circle moves slowly to the left",
        "a blue square slides up",
        "two green triangles drift to the right",
    ),
)

# The one place the demo's shipped checkpoint is located: the loader reads it, training writes it.
DEMO_WEIGHTS_DIR = Path(__file__).resolve().parent / "demo" / "weights"
# LoRAs made for the demo model (its 4-step distillation LoRA); `wanserve serve` lists them
DEMO_LORA_DIR = Path(__file__).resolve().parent / "demo" / "loras"

# Presets whose checkpoint folder ships inside the `model` package.
BUILTIN_CHECKPOINTS: dict[str, Path] = {"wanserve-demo": DEMO_WEIGHTS_DIR}

PRESETS: dict[str, ModelPreset] = {
    p.model_id: p
    for p in (
        WAN22_T2V_A14B,
        WAN22_I2V_A14B,
        WAN22_TI2V_5B,
        TINY_T2V_A14B,
        TINY_I2V_A14B,
        TINY_TI2V,
        TINY_T2V_A14B_H4,
        TINY_I2V_A14B_H4,
        TINY_TI2V_H4,
        WANSERVE_DEMO,
    )
}

# Official preset for each (task, number of experts) — used to describe checkpoints found on disk.
OFFICIAL_BY_TASK: dict[str, ModelPreset] = {
    "t2v": WAN22_T2V_A14B,
    "i2v": WAN22_I2V_A14B,
    "ti2v": WAN22_TI2V_5B,
}


def register_preset(preset: ModelPreset) -> None:
    """Add a preset (e.g. `wanserve-demo`) to `PRESETS`."""
    PRESETS[preset.model_id] = preset


def get_preset(model_id: str) -> ModelPreset:
    try:
        return PRESETS[model_id]
    except KeyError:
        raise KeyError(f"unknown model id {model_id!r}; known: {sorted(PRESETS)}") from None
