"""LoRAs: parity with diffusers 0.42.1 `load_lora_weights` for each key format, Lightning files,
exact removal (a no-LoRA run after LoRA runs is bit-identical), fused == unfused, clear errors.

The diffusers side is the whole pipeline of `test_pipeline_parity` with the LoRA loaded through
`load_lora_weights` (+ `load_into_transformer_2=True` for the low-noise expert) and scaled with
`set_adapters`; ours is the same saved folder loaded with `load_pipeline` and `generate(loras=...)`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model import load_pipeline
from model.lora import LoraError, LoraSpec, apply_loras, load_lora, parse_lora_state_dict
from tests.model.test_pipeline_parity import NEGATIVE, PROMPT, _build

pytest.importorskip("peft")

TOL = 1e-4
RANK = 4
ATTN = [(a, p) for a in ("self_attn", "cross_attn") for p in "qkvo"]
DIFFUSERS_ATTN = {"self_attn": "attn1", "cross_attn": "attn2"}
DIFFUSERS_PROJ = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0"}


# --------------------------------------------------------------------------------------------------
# building LoRA files with random values, shapes from the DiT
# --------------------------------------------------------------------------------------------------
def _pair(gen: torch.Generator, w: torch.Tensor, rank: int = RANK) -> tuple[torch.Tensor, torch.Tensor]:
    out_f, in_f = w.shape
    return torch.randn(rank, in_f, generator=gen) * 0.2, torch.randn(out_f, rank, generator=gen) * 0.2


def _block_layers(dit: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    out = []
    for i in range(len(dit.blocks)):
        for a, p in ATTN:
            out.append((f"blocks.{i}.{a}.{p}", dit.get_submodule(f"blocks.{i}.{a}.{p}").weight))
        for f in ("0", "2"):
            out.append((f"blocks.{i}.ffn.{f}", dit.get_submodule(f"blocks.{i}.ffn.{f}").weight))
    return out


def official_lora(dit: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """ComfyUI / LightX2V style: lora_down/up + alpha on blocks, diff_b, zero norm diffs,
    head.head as a full diff, the text embedding and time projection as low-rank layers."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, w in _block_layers(dit):
        down, up = _pair(g, w)
        sd[f"diffusion_model.{name}.lora_down.weight"] = down
        sd[f"diffusion_model.{name}.lora_up.weight"] = up
        sd[f"diffusion_model.{name}.alpha"] = torch.tensor(2.0)
        sd[f"diffusion_model.{name}.diff_b"] = torch.randn(w.shape[0], generator=g) * 0.05
    sd["diffusion_model.blocks.0.norm3.diff"] = torch.zeros_like(dit.blocks[0].norm3.weight)
    sd["diffusion_model.blocks.0.self_attn.norm_q.diff"] = torch.zeros_like(
        dit.blocks[0].self_attn.norm_q.weight
    )
    for name in ("text_embedding.0", "time_projection.1"):
        down, up = _pair(g, dit.get_submodule(name).weight)
        sd[f"diffusion_model.{name}.lora_down.weight"] = down
        sd[f"diffusion_model.{name}.lora_up.weight"] = up
    # diffusers turns on lora_bias for the whole file once any diff_b exists: give each layer one
    sd["diffusion_model.text_embedding.0.diff_b"] = (
        torch.randn(dit.text_embedding[0].bias.shape, generator=g) * 0.05
    )
    sd["diffusion_model.time_projection.1.diff_b"] = (
        torch.randn(dit.time_projection[1].bias.shape, generator=g) * 0.05
    )
    hw = dit.head.head.weight
    sd["diffusion_model.head.head.diff"] = torch.randn(hw.shape, generator=g) * 0.02
    sd["diffusion_model.head.head.diff_b"] = torch.randn(hw.shape[0], generator=g) * 0.02
    return sd


def diffusers_lora(dit: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """PEFT names (lora_A / lora_B, a lora_B.bias), including proj_out and the text embedder."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, w in _block_layers(dit):
        i, rest = name.split(".", 2)[1], name.split(".", 2)[2]
        if rest.startswith("ffn"):
            dname = f"blocks.{i}.ffn.{'net.0.proj' if rest.endswith('0') else 'net.2'}"
        else:
            a, p = rest.split(".")
            dname = f"blocks.{i}.{DIFFUSERS_ATTN[a]}.{DIFFUSERS_PROJ[p]}"
        down, up = _pair(g, w)
        sd[f"transformer.{dname}.lora_A.weight"] = down
        sd[f"transformer.{dname}.lora_B.weight"] = up
    for ours, theirs in (
        ("head.head", "proj_out"),
        ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ):
        down, up = _pair(g, dit.get_submodule(ours).weight)
        sd[f"transformer.{theirs}.lora_A.weight"] = down
        sd[f"transformer.{theirs}.lora_B.weight"] = up
    return sd


def musubi_lora(dit: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """musubi-tuner: every attention and FFN layer of every block, with alpha."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, w in _block_layers(dit):
        flat = "lora_unet_" + name.replace(".", "_")
        down, up = _pair(g, w)
        sd[f"{flat}.lora_down.weight"] = down
        sd[f"{flat}.lora_up.weight"] = up
        sd[f"{flat}.alpha"] = torch.tensor(float(RANK) * 1.5)
    return sd


FORMATS = {"official": official_lora, "diffusers": diffusers_lora, "musubi": musubi_lora}


# --------------------------------------------------------------------------------------------------
# running both sides
# --------------------------------------------------------------------------------------------------
def _setup(tmp_path: Path, kind: str):
    ref = _build(kind)
    folder = tmp_path / kind
    ref.save_pretrained(str(folder))
    return ref, load_pipeline(str(folder))


def _ref_run(ref, steps: int, guidance: tuple[float, float], seed: int = 7) -> torch.Tensor:
    kw = dict(
        prompt=PROMPT, negative_prompt=NEGATIVE, height=32, width=32, num_frames=5, num_inference_steps=steps,
        guidance_scale=guidance[1], generator=torch.Generator().manual_seed(seed), output_type="pt",
        max_sequence_length=512,
    )  # fmt: skip
    if ref.config.boundary_ratio is not None:
        kw["guidance_scale_2"] = guidance[0]
    with torch.no_grad():
        frames = ref(**kw).frames[0]
    return frames.permute(1, 0, 2, 3) * 2.0 - 1.0


def _our_run(pipe, steps: int, guidance: tuple[float, float], shift: float, loras=None, seed: int = 7):
    return pipe.generate(
        PROMPT, negative_prompt=NEGATIVE, height=32, width=32, num_frames=5, num_steps=steps,
        guidance_scale=guidance if pipe.transformer_2 is not None else guidance[1], shift=shift, seed=seed,
        loras=loras,
    )  # fmt: skip


CASES = {"ti2v-t2v": ((5.0, 5.0), 5.0, 64), "t2v-a14b": ((3.0, 4.0), 12.0, 32)}


@pytest.mark.parity
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("kind", list(CASES))
def test_single_file_matches_diffusers(tmp_path, kind, fmt):
    guidance, shift, size = CASES[kind]
    ref, ours = _setup(tmp_path, kind)
    sd = FORMATS[fmt](ours.transformer, seed=1)
    path = tmp_path / f"{fmt}.safetensors"
    save_file(sd, str(path))

    steps = 4
    base = _our_run(ours, steps, guidance, shift)
    got = _our_run(ours, steps, guidance, shift, loras=[(str(path), 0.7)])
    after = _our_run(ours, steps, guidance, shift)

    ref.load_lora_weights(str(path), adapter_name="x")
    names = ["x"]
    if ref.transformer_2 is not None:  # a single file applies to both experts
        ref.load_lora_weights(str(path), adapter_name="x", load_into_transformer_2=True)
    ref.set_adapters(names, adapter_weights=[0.7])
    want = _ref_run(ref, steps, guidance)

    assert (got - base).abs().max().item() > 1e-2  # the LoRA does change the video
    assert (got - want).abs().max().item() < TOL
    assert torch.equal(base, after)  # removed exactly


@pytest.mark.parity
def test_lightning_folder_and_stacking_match_diffusers(tmp_path):
    """Per-expert files (high_noise_model / low_noise_model), plus a second LoRA stacked on both."""
    ref, ours = _setup(tmp_path, "t2v-a14b")
    folder = tmp_path / "lightning"
    folder.mkdir()
    save_file(official_lora(ours.transformer, seed=2), str(folder / "high_noise_model.safetensors"))
    save_file(official_lora(ours.transformer_2, seed=3), str(folder / "low_noise_model.safetensors"))
    extra = tmp_path / "style.safetensors"
    save_file(musubi_lora(ours.transformer, seed=4), str(extra))

    got = _our_run(ours, 4, (3.0, 4.0), 12.0, loras=[(str(folder), 1.0), (str(extra), 0.5)])

    ref.load_lora_weights(str(folder / "high_noise_model.safetensors"), adapter_name="light")
    ref.load_lora_weights(
        str(folder / "low_noise_model.safetensors"), adapter_name="light", load_into_transformer_2=True
    )
    ref.load_lora_weights(str(extra), adapter_name="style")
    ref.load_lora_weights(str(extra), adapter_name="style", load_into_transformer_2=True)
    ref.set_adapters(["light", "style"], adapter_weights=[1.0, 0.5])
    want = _ref_run(ref, 4, (3.0, 4.0))
    assert (got - want).abs().max().item() < TOL


# --------------------------------------------------------------------------------------------------
# our own behaviour on the tiny presets
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_t2v():
    return load_pipeline("tiny-t2v-a14b")


KW = dict(height=32, width=32, num_frames=5, num_steps=3, shift=5.0, seed=3, guidance_scale=(3.0, 4.0))


def lightning_like(dit: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The Wan2.2-Lightning key layout at tiny size: `diffusion_model.blocks.N.{self_attn,cross_attn}.
    {q,k,v,o}` and `ffn.{0,2}` with `lora_down.weight` [r, in], `lora_up.weight` [out, r] (fp32)
    and a scalar `alpha` (8 at rank 64 in the released files; here alpha/rank = 1/8 as well)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, w in _block_layers(dit):
        down, up = _pair(g, w, rank=8)
        sd[f"diffusion_model.{name}.lora_down.weight"] = down
        sd[f"diffusion_model.{name}.lora_up.weight"] = up
        sd[f"diffusion_model.{name}.alpha"] = torch.tensor(1.0)
    return sd


def test_lightning_layout_loads_and_distill_runs(tmp_path, tiny_t2v):
    folder = tmp_path / "Wan2.2-T2V-A14B-4steps-lora"
    folder.mkdir()
    save_file(lightning_like(tiny_t2v.transformer, 0), str(folder / "high_noise_model.safetensors"))
    save_file(lightning_like(tiny_t2v.transformer_2, 1), str(folder / "low_noise_model.safetensors"))
    spec = load_lora(folder)
    assert spec.high is not None and spec.low is not None and spec.rank == 8
    n_layers = len(_block_layers(tiny_t2v.transformer))
    assert len(spec.high.targets) == n_layers
    assert all(t.alpha_scale == pytest.approx(1 / 8) for t in spec.high.targets.values())
    kw = {**KW, "num_steps": 4}
    base = tiny_t2v.generate("a cat", sampler="distill", **kw)
    a = tiny_t2v.generate("a cat", sampler="distill", loras=[(folder, 1.0)], **kw)
    b = tiny_t2v.generate("a cat", sampler="distill", loras=[(spec, 1.0)], **kw)  # preloaded == path
    assert torch.equal(a, b) and not torch.equal(a, base)
    assert torch.equal(tiny_t2v.generate("a cat", sampler="distill", **kw), base)


def test_no_lora_run_after_lora_runs_is_bit_identical(tmp_path, tiny_t2v):
    before = {k: v.clone() for k, v in tiny_t2v.transformer.state_dict().items()}
    base = tiny_t2v.generate("a cat", **KW)
    one = tmp_path / "one.safetensors"
    two = tmp_path / "two.safetensors"
    save_file(official_lora(tiny_t2v.transformer, 5), str(one))
    save_file(diffusers_lora(tiny_t2v.transformer, 6), str(two))
    tiny_t2v.generate("a cat", loras=[(one, 1.0)], **KW)
    tiny_t2v.generate("a cat", loras=[(one, 0.3), (two, 0.8)], **KW)
    tiny_t2v.lora_fuse = True
    try:
        tiny_t2v.generate("a cat", loras=[(two, 1.0)], **KW)
    finally:
        tiny_t2v.lora_fuse = False
    with pytest.raises(LoraError):  # a failing request leaves nothing behind either
        tiny_t2v.generate("a cat", loras=[(one, 1.0), (tmp_path / "missing.safetensors", 1.0)], **KW)
    assert torch.equal(tiny_t2v.generate("a cat", **KW), base)
    after = tiny_t2v.transformer.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert not tiny_t2v.transformer.blocks[0].self_attn.q._forward_hooks


def test_fused_equals_unfused(tmp_path, tiny_t2v):
    path = tmp_path / "x.safetensors"
    save_file(official_lora(tiny_t2v.transformer, 7), str(path))
    unfused = tiny_t2v.generate("a cat", loras=[(path, 0.9)], **KW)
    tiny_t2v.lora_fuse = True
    try:
        fused = tiny_t2v.generate("a cat", loras=[(path, 0.9)], **KW)
    finally:
        tiny_t2v.lora_fuse = False
    assert (fused - unfused).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("diffusion_model.blocks.0.self_attn.q.dora_scale", torch.ones(1, 32), "unsupported entry"),
        ("unet.blocks.0.self_attn.q.lora_down.weight", torch.ones(4, 32), "unknown format"),
        ("lora_unet_blocks_0_mystery.lora_down.weight", torch.ones(4, 32), "no layer"),
        ("diffusion_model.blocks.0.self_attn.q.alpha", torch.ones(2), "alpha must be a scalar"),
    ],
)
def test_parse_errors_name_the_key(key, value, message):
    with pytest.raises(LoraError, match=message) as e:
        parse_lora_state_dict({key: value})
    assert key in str(e.value)


def test_apply_errors_name_the_key_and_change_nothing(tiny_t2v):
    dit = tiny_t2v.transformer
    good = {
        "diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.ones(4, 32),
        "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.ones(32, 4),
    }
    wrong_shape = {
        "diffusion_model.blocks.1.ffn.0.lora_down.weight": torch.ones(4, 48),
        "diffusion_model.blocks.1.ffn.0.lora_up.weight": torch.ones(64, 4),
    }
    no_layer = {
        "diffusion_model.blocks.99.self_attn.q.lora_down.weight": torch.ones(4, 32),
        "diffusion_model.blocks.99.self_attn.q.lora_up.weight": torch.ones(32, 4),
    }
    for bad, message in ((wrong_shape, "do not fit"), (no_layer, "no layer")):
        with pytest.raises(LoraError, match=message) as e:
            apply_loras(dit, [(parse_lora_state_dict(good), 1.0), (parse_lora_state_dict(bad), 1.0)])
        assert next(iter(bad)) in str(e.value)
        assert not dit.blocks[0].self_attn.q._forward_hooks
    with pytest.raises(LoraError, match="only one of"):
        parse_lora_state_dict({k: v for k, v in good.items() if "down" in k})
    with pytest.raises(LoraError, match="per-expert"):
        LoraSpec("x", high=parse_lora_state_dict(good)).for_expert(0, 1)
