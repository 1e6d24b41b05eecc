"""Checkpoint loading: tiny random checkpoints written in the exact official and diffusers layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import CheckpointError, load_pipeline
from model.loading import official_vae_config
from model.tokenizer import ByteTokenizer
from model.transformer import TransformerConfig, WanTransformer
from model.vae21 import Wan21VAE, Wan21VAEConfig
from model.vae22 import Wan22VAE, Wan22VAEConfig

KW = dict(height=32, width=32, num_frames=5, num_steps=2, shift=5.0, seed=0)


def _dit_cfg(model_type: str, in_dim: int, out_dim: int) -> dict:
    # exactly the keys of an official config.json
    return {
        "_class_name": "WanModel", "_diffusers_version": "0.33.0", "dim": 32, "eps": 1e-06, "ffn_dim": 64,
        "freq_dim": 256, "in_dim": in_dim, "model_type": model_type, "num_heads": 2, "num_layers": 2,
        "out_dim": out_dim, "text_len": 512, "text_dim": 32,
    }  # fmt: skip


def _random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in module.state_dict().items()}


def _write_sharded(folder: Path, sd: dict[str, torch.Tensor], n_shards: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(sd)
    weight_map, total = {}, 0
    for i in range(n_shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {k: sd[k].contiguous() for k in keys[i::n_shards]}
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map |= {k: name for k in part}
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _official_t5(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*s: int) -> torch.Tensor:
        return (torch.randn(*s, generator=g) * 0.2).to(torch.bfloat16)  # the official file is bf16

    sd = {"token_embedding.weight": r(384, 32), "norm.weight": r(32) + 1}
    for i in range(2):
        for n in "qkv":
            sd[f"blocks.{i}.attn.{n}.weight"] = r(32, 32)
        sd |= {
            f"blocks.{i}.attn.o.weight": r(32, 32), f"blocks.{i}.norm1.weight": r(32) + 1,
            f"blocks.{i}.norm2.weight": r(32) + 1, f"blocks.{i}.ffn.gate.0.weight": r(64, 32),
            f"blocks.{i}.ffn.fc1.weight": r(64, 32), f"blocks.{i}.ffn.fc2.weight": r(32, 64),
            f"blocks.{i}.pos_embedding.embedding.weight": r(8, 4),
        }  # fmt: skip
    return sd


def _common_official_files(root: Path, vae: torch.nn.Module, vae_file: str, seed: int) -> dict:
    vae_sd = _random_state(vae, seed)
    torch.save(vae_sd, root / vae_file)
    t5 = _official_t5(seed + 1)
    torch.save(t5, root / "models_t5_umt5-xxl-enc-bf16.pth")
    ByteTokenizer().save_pretrained(root / "google" / "umt5-xxl")
    return {"vae": vae_sd, "t5": t5}


@pytest.fixture
def official_ti2v(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "Wan2.2-TI2V-5B"
    root.mkdir()
    cfg = _dit_cfg("ti2v", 48, 48)
    (root / "config.json").write_text(json.dumps(cfg))
    dit_sd = _random_state(WanTransformer(TransformerConfig.from_json_dict(cfg)), 0)
    _write_sharded(root, dit_sd, 3)
    vae = Wan22VAE(Wan22VAEConfig(dim=4, dec_dim=6, z_dim=48, dim_mult=(1, 1, 1, 1), num_res_blocks=1))
    return root, {"dit": dit_sd, **_common_official_files(root, vae, "Wan2.2_VAE.pth", 5)}


@pytest.fixture
def official_t2v_a14b(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "Wan2.2-T2V-A14B"
    root.mkdir()
    cfg = _dit_cfg("t2v", 16, 16)
    sds = {}
    for i, sub in enumerate(("high_noise_model", "low_noise_model")):
        (root / sub).mkdir()
        (root / sub / "config.json").write_text(json.dumps(cfg))
        sds[sub] = _random_state(WanTransformer(TransformerConfig.from_json_dict(cfg)), 10 + i)
        _write_sharded(root / sub, sds[sub], 2)
    vae = Wan21VAE(Wan21VAEConfig(dim=4, dim_mult=(1, 1, 1, 1), num_res_blocks=1))
    return root, {**sds, **_common_official_files(root, vae, "Wan2.1_VAE.pth", 20)}


def _assert_loaded(module: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    got = module.state_dict()
    assert set(got) == set(sd)
    for k, v in sd.items():
        assert torch.equal(got[k].float(), v.float()), k


def test_official_ti2v_layout(official_ti2v):
    root, sds = official_ti2v
    pipe = load_pipeline(str(root))
    assert pipe.preset.model_id == "wan2.2-ti2v-5b" and pipe.preset.boundary is None
    assert pipe.preset.vae_stride == (4, 16, 16) and pipe.transformer_2 is None
    assert pipe.vae.config.dec_dim == 6 and pipe.vae.config.num_res_blocks == 1
    _assert_loaded(pipe.transformer, sds["dit"])
    _assert_loaded(pipe.vae, sds["vae"])
    t5 = pipe.text_encoder.model
    assert torch.equal(
        t5.encoder.block[1].layer[1].DenseReluDense.wi_0.weight,
        sds["t5"]["blocks.1.ffn.gate.0.weight"].float(),
    )
    video = pipe.generate("a cat", guidance_scale=5.0, **KW)
    assert video.shape == (3, 5, 32, 32) and torch.isfinite(video).all()


def test_official_a14b_layout_routes_high_and_low(official_t2v_a14b):
    root, sds = official_t2v_a14b
    pipe = load_pipeline(root)
    assert pipe.preset.model_id == "wan2.2-t2v-a14b" and pipe.preset.boundary == 0.875
    _assert_loaded(pipe.transformer, sds["high_noise_model"])
    _assert_loaded(pipe.transformer_2, sds["low_noise_model"])
    video = pipe.generate("a cat", guidance_scale=(3.0, 4.0), **KW)
    assert video.shape == (3, 5, 32, 32)


def test_bf16_load_has_no_fp32_dit_weights(official_t2v_a14b):
    root, _ = official_t2v_a14b
    pipe = load_pipeline(root, dtype=torch.bfloat16)
    assert pipe.dtype == torch.bfloat16
    for m in (pipe.transformer, pipe.transformer_2, pipe.text_encoder.model):
        assert {p.dtype for p in m.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in pipe.vae.parameters()} == {torch.float32}
    video = pipe.generate("a cat", guidance_scale=(3.0, 4.0), **KW)
    assert video.dtype == torch.float32 and torch.isfinite(video).all()


def test_pth_weights_assigned_and_nothing_left_on_meta(official_t2v_a14b):
    root, _ = official_t2v_a14b
    pipe = load_pipeline(root)  # fp32 VAE from an fp32 .pth: assigned straight from the mmap
    w = pipe.vae.encoder.conv1.weight
    reloaded = torch.load(root / "Wan2.1_VAE.pth", mmap=True, weights_only=True)["encoder.conv1.weight"]
    assert torch.equal(w, reloaded)
    assert not any(p.is_meta for p in pipe.transformer.parameters())


@pytest.mark.parametrize("vae_cls", ["wan2.1", "wan2.2"])
def test_vae_config_inferred_from_official_structure(vae_cls):
    if vae_cls == "wan2.1":
        cfg = Wan21VAEConfig(dim=2)  # official structure (mult 1,2,4,4; 2 res blocks), tiny width
        sd = Wan21VAE(cfg).state_dict()
    else:
        cfg = Wan22VAEConfig(dim=2, dec_dim=4, temperal_downsample=(False, True, False))
        sd = Wan22VAE(cfg).state_dict()
    assert official_vae_config(sd, vae_cls == "wan2.2") == cfg


# --------------------------------------------------------------------------------------------------
# diffusers layout (sharded transformer, bf16)
# --------------------------------------------------------------------------------------------------
def test_diffusers_layout_sharded(tmp_path: Path):
    diffusers = pytest.importorskip("diffusers")
    from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    dit = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=48, out_channels=48,
        text_dim=32, freq_dim=256, ffn_dim=64, num_layers=2, qk_norm="rms_norm_across_heads",
    )  # fmt: skip
    vae = diffusers.AutoencoderKLWan(
        base_dim=4, decoder_base_dim=6, z_dim=48, dim_mult=[1, 1, 1, 1], num_res_blocks=1, is_residual=True,
        in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16,
        latents_mean=[0.0] * 48, latents_std=[1.0] * 48,
    )  # fmt: skip
    te = UMT5EncoderModel(
        UMT5Config(
            vocab_size=384,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
        )  # fmt: skip
    )
    sched = diffusers.UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
    )
    pipe = diffusers.WanPipeline(
        tokenizer=ByT5Tokenizer(),
        text_encoder=te,
        vae=vae,
        scheduler=sched,
        transformer=dit,
        expand_timesteps=True,
    )
    pipe.save_pretrained(str(tmp_path), max_shard_size="20KB")
    assert (tmp_path / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file()

    ours = load_pipeline(str(tmp_path), dtype=torch.bfloat16)
    assert ours.preset.task == "ti2v" and ours.preset.vae_stride == (4, 16, 16)
    assert {p.dtype for p in ours.transformer.parameters()} == {torch.bfloat16}
    ref = dit.state_dict()["blocks.0.attn2.to_k.weight"]
    assert torch.equal(ours.transformer.blocks[0].cross_attn.k.weight, ref.to(torch.bfloat16))
    assert ours.generate("a cat", guidance_scale=5.0, **KW).shape == (3, 5, 32, 32)


# --------------------------------------------------------------------------------------------------
# malformed checkpoints
# --------------------------------------------------------------------------------------------------
def _shard_with(root: Path, key: str) -> Path:
    index = json.loads((root / "diffusion_pytorch_model.safetensors.index.json").read_text())
    return root / index["weight_map"][key]


def test_missing_tensor_is_named(official_ti2v):
    root, _ = official_ti2v
    key = "blocks.1.self_attn.q.weight"
    shard = _shard_with(root, key)
    sd = load_file(str(shard))
    del sd[key]
    save_file(sd, str(shard))
    with pytest.raises(CheckpointError, match=r"blocks\.1\.self_attn\.q\.weight"):
        load_pipeline(str(root))


def test_missing_tensor_not_listed_in_index_is_named(official_ti2v):
    root, _ = official_ti2v
    index_path = root / "diffusion_pytorch_model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    key = "head.modulation"
    shard = root / index["weight_map"].pop(key)
    index_path.write_text(json.dumps(index))
    sd = load_file(str(shard))
    del sd[key]
    save_file(sd, str(shard))
    with pytest.raises(CheckpointError, match=r"missing tensor 'head\.modulation'"):
        load_pipeline(str(root))


def test_mismatched_shape_is_named(official_ti2v):
    root, _ = official_ti2v
    key = "patch_embedding.weight"
    shard = _shard_with(root, key)
    sd = load_file(str(shard))
    sd[key] = sd[key][:, :, :, :1].contiguous()
    save_file(sd, str(shard))
    with pytest.raises(CheckpointError, match=r"patch_embedding\.weight.*shape"):
        load_pipeline(str(root))


def test_missing_shard_file(official_ti2v):
    root, _ = official_ti2v
    next(root.glob("diffusion_pytorch_model-00002-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="00002"):
        load_pipeline(str(root))


def test_missing_vae_and_t5_tensors(official_t2v_a14b):
    root, sds = official_t2v_a14b
    t5 = dict(sds["t5"])
    del t5["blocks.1.ffn.fc2.weight"]
    torch.save(t5, root / "models_t5_umt5-xxl-enc-bf16.pth")
    with pytest.raises(CheckpointError, match=r"block\.1\.layer\.1\.DenseReluDense\.wo\.weight"):
        load_pipeline(str(root))
    (root / "Wan2.1_VAE.pth").unlink()
    with pytest.raises(CheckpointError, match=r"Wan2\.1_VAE\.pth"):
        load_pipeline(str(root))


def test_not_a_checkpoint(tmp_path: Path):
    with pytest.raises(CheckpointError, match="not a Wan2.2 checkpoint"):
        load_pipeline(str(tmp_path))
    with pytest.raises(CheckpointError, match="wan2.2-ti2v-5b"):
        load_pipeline("wan2.2-ti2v-5b")
    with pytest.raises(CheckpointError, match="nope"):
        load_pipeline("nope")
    assert issubclass(CheckpointError, ValueError)


def test_preset_override_file(official_ti2v):
    root, _ = official_ti2v
    from model.presets import PRESETS

    p = PRESETS["tiny-ti2v"].to_dict() | {"model_id": "wanserve-test"}
    (root / "wanserve_preset.json").write_text(json.dumps(p))
    pipe = load_pipeline(str(root))
    assert pipe.preset.model_id == "wanserve-test" and pipe.preset.sizes == PRESETS["tiny-ti2v"].sizes


def test_presets_are_json_and_official_defaults():
    import dataclasses

    from model.presets import OFFICIAL_NEGATIVE_PROMPT, PRESETS, ModelPreset

    for p in PRESETS.values():
        d = json.loads(json.dumps(dataclasses.asdict(p)))
        assert ModelPreset.from_dict(d) == p
        assert (p.default_num_frames - 1) % p.vae_stride[0] == 0
        w, h = p.default_size
        assert w % p.spatial_multiple == 0 and h % p.spatial_multiple == 0 and p.default_size in p.sizes
    t2v, i2v, ti2v = PRESETS["wan2.2-t2v-a14b"], PRESETS["wan2.2-i2v-a14b"], PRESETS["wan2.2-ti2v-5b"]
    assert (t2v.default_guidance_scale, t2v.boundary, t2v.default_shift) == ((3.0, 4.0), 0.875, 12.0)
    assert (i2v.default_guidance_scale, i2v.boundary, i2v.default_shift) == ((3.5, 3.5), 0.9, 5.0)
    assert (ti2v.default_guidance_scale, ti2v.boundary, ti2v.fps, ti2v.default_num_frames) == (
        (5.0,),
        None,
        24,
        121,
    )
    assert ti2v.sizes == ((1280, 704), (704, 1280)) and ti2v.vae_stride == (4, 16, 16)
    assert t2v.default_num_steps == 40 and ti2v.default_num_steps == 50 and t2v.fps == 16
    assert OFFICIAL_NEGATIVE_PROMPT.startswith("色调艳丽，过曝") and OFFICIAL_NEGATIVE_PROMPT.endswith(
        "倒着走"
    )
