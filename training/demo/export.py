"""Write the demo model as a checkpoint folder in the official Wan2.2 TI2V layout.

    <out>/config.json                              DiT config (official keys + patch_size, text_dim)
    <out>/diffusion_pytorch_model.safetensors      DiT weights, official key names
    <out>/Wan2.2_VAE.pth                           VAE state dict, official key names
    <out>/models_t5_umt5-xxl-enc-bf16.pth          tiny UMT5 encoder, official T5 key names
    <out>/google/umt5-xxl/wanserve_byte_tokenizer.json   marks the byte tokenizer (no vocab files), or
    <out>/google/umt5-xxl/wanserve_word_tokenizer.json   the word tokenizer with its vocabulary
    <out>/wanserve_preset.json                     the `wanserve-demo` preset

The official loader infers the VAE architecture from tensor shapes but has no place for per-channel
latent statistics of a non-48-channel VAE, so the measured mean/std are folded into the VAE's two
1x1x1 convolutions (``conv1`` produces normalised mu, ``conv2`` de-normalises): the exported VAE then
uses mean 0 / std 1 and behaves exactly like the trained one with its statistics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.tokenizer import MARKER_FILE, WORD_MARKER_FILE, ByteTokenizer, WordTokenizer

Tokenizer = ByteTokenizer | WordTokenizer

DIT_FILE = "diffusion_pytorch_model.safetensors"
VAE_FILE = "Wan2.2_VAE.pth"
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
TOKENIZER_DIR = "google/umt5-xxl"
PRESET_FILE = "wanserve_preset.json"

_HF_TO_OFFICIAL_BLOCK = {
    "layer.0.layer_norm.weight": "norm1.weight",
    "layer.0.SelfAttention.q.weight": "attn.q.weight",
    "layer.0.SelfAttention.k.weight": "attn.k.weight",
    "layer.0.SelfAttention.v.weight": "attn.v.weight",
    "layer.0.SelfAttention.o.weight": "attn.o.weight",
    "layer.0.SelfAttention.relative_attention_bias.weight": "pos_embedding.embedding.weight",
    "layer.1.layer_norm.weight": "norm2.weight",
    "layer.1.DenseReluDense.wi_0.weight": "ffn.gate.0.weight",
    "layer.1.DenseReluDense.wi_1.weight": "ffn.fc1.weight",
    "layer.1.DenseReluDense.wo.weight": "ffn.fc2.weight",
}


def hf_t5_to_official_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`UMT5EncoderModel` state dict -> official `T5Encoder` names (inverse of the loader's map)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key in ("shared.weight", "encoder.embed_tokens.weight"):
            out["token_embedding.weight"] = value
        elif key == "encoder.final_layer_norm.weight":
            out["norm.weight"] = value
        else:
            m = re.fullmatch(r"encoder\.block\.(\d+)\.(.+)", key)
            if m is None or m.group(2) not in _HF_TO_OFFICIAL_BLOCK:
                raise KeyError(f"unexpected UMT5 key {key!r}")
            out[f"blocks.{m.group(1)}.{_HF_TO_OFFICIAL_BLOCK[m.group(2)]}"] = value
    return out


def fold_vae_normalisation(vae: nn.Module) -> dict[str, torch.Tensor]:
    """VAE state dict whose conv1/conv2 include the latent normalisation (mean 0 / std 1 afterwards)."""
    cfg: Any = vae.config
    z = int(cfg.z_dim)
    mean = torch.tensor(cfg.latents_mean, dtype=torch.float64)
    std = torch.tensor(cfg.latents_std, dtype=torch.float64)
    sd = {k: v.detach().clone().float() for k, v in vae.state_dict().items()}
    # conv1: [2z, 2z, 1, 1, 1] -> (mu, logvar); normalised mu = (mu - mean) / std
    w1 = sd["conv1.weight"].double()
    b1 = sd["conv1.bias"].double()
    w1[:z] = w1[:z] / std.view(-1, 1, 1, 1, 1)
    b1[:z] = (b1[:z] - mean) / std
    # conv2: [z, z, 1, 1, 1] applied to raw mu = z_norm * std + mean
    w2 = sd["conv2.weight"].double()
    b2 = sd["conv2.bias"].double()
    b2 = b2 + (w2[:, :, 0, 0, 0] @ mean)
    w2 = w2 * std.view(1, -1, 1, 1, 1)
    sd["conv1.weight"], sd["conv1.bias"] = w1.float(), b1.float()
    sd["conv2.weight"], sd["conv2.bias"] = w2.float(), b2.float()
    return sd


def dit_config_json(dit: nn.Module) -> dict[str, Any]:
    c: Any = dit.cfg
    return {
        "_class_name": "WanModel",
        "_diffusers_version": "0.33.0",
        "model_type": c.model_type,
        "patch_size": list(c.patch_size),
        "text_len": c.text_len,
        "in_dim": c.in_dim,
        "dim": c.dim,
        "ffn_dim": c.ffn_dim,
        "freq_dim": c.freq_dim,
        "text_dim": c.text_dim,
        "out_dim": c.out_dim,
        "num_heads": c.num_heads,
        "num_layers": c.num_layers,
        "eps": c.eps,
        "cross_attn_norm": c.cross_attn_norm,
        "qk_norm": c.qk_norm,
    }


def export_checkpoint(
    out: Path, *, dit: nn.Module, vae: nn.Module, t5: nn.Module, tokenizer: Tokenizer | None = None
) -> None:
    """``tokenizer``: what ``t5`` reads (default: bytes)."""
    from safetensors.torch import save_file

    from model.presets import WANSERVE_DEMO

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dit_config_json(dit), indent=2) + "\n")
    dit_sd = {k: v.detach().float().contiguous() for k, v in dit.state_dict().items()}
    save_file(dit_sd, str(out / DIT_FILE), metadata={"format": "pt"})
    torch.save(fold_vae_normalisation(vae), out / VAE_FILE)
    t5_sd = hf_t5_to_official_keys({k: v.detach().float().contiguous() for k, v in t5.state_dict().items()})
    torch.save(t5_sd, out / T5_FILE)
    for marker in (MARKER_FILE, WORD_MARKER_FILE):  # a re-export may change the tokenizer
        (out / TOKENIZER_DIR / marker).unlink(missing_ok=True)
    (tokenizer or ByteTokenizer()).save_pretrained(out / TOKENIZER_DIR)
    (out / PRESET_FILE).write_text(json.dumps(WANSERVE_DEMO.to_dict(), indent=2) + "\n")
