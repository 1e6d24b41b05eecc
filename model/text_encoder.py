"""UMT5-XXL text encoder of Wan2.2, run through `transformers.UMT5EncoderModel`.

Reproduces `wan/modules/t5.py` + `wan/modules/tokenizers.py` (Wan2.2 commit 42bf4cf):

* prompt cleaning (`clean='whitespace'`): `ftfy.fix_text`, `html.unescape` twice, strip, collapse
  whitespace runs to one space;
* tokenisation to `text_len` = 512 tokens (`padding='max_length'`, truncation, `</s>` appended);
* encoder run with the attention mask, output trimmed to the true length (EOS included);
* for the DiT the trimmed embeddings are re-padded with zeros to `text_len`
  (the DiT has no text mask; padded rows are exact zeros before its `text_embedding`).

The official checkpoint `models_t5_umt5-xxl-enc-bf16.pth` uses its own key names; they are mapped
onto transformers' names by `official_t5_to_hf_keys` (the architectures are the same: pre-norm
RMS layer norms, unscaled attention with a per-layer bucketed relative bias, gated-GELU(tanh) FFN).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ftfy  # what the official tokenizer wrapper cleans text with
import torch
from torch import nn

__all__ = [
    "TextEncoder",
    "clean_prompt",
    "official_t5_to_hf_keys",
    "pad_embeddings",
    "umt5_config_from_official",
    "UMT5_XXL_CONFIG",
]

TEXT_LEN = 512

# `umt5_xxl(encoder_only=True)`: vocab 256384, dim 4096, ffn 10240, 64 heads x 64, 24 layers, 32 buckets.
UMT5_XXL_CONFIG: dict[str, Any] = dict(
    vocab_size=256384,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    dropout_rate=0.0,
    feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6,
)


def clean_prompt(text: str) -> str:
    """The official `whitespace` cleaning: ftfy, html-unescape twice, collapse whitespace."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def pad_embeddings(embs: Sequence[torch.Tensor], text_len: int = TEXT_LEN) -> torch.Tensor:
    """Trimmed embeddings [L_i, D] -> zero-padded batch [B, text_len, D] (longer ones are cut)."""
    d = embs[0].shape[-1]
    out = embs[0].new_zeros(len(embs), text_len, d)
    for i, e in enumerate(embs):
        n = min(e.shape[0], text_len)
        out[i, :n] = e[:n]
    return out


# ---------------------------------------------------------------------------------------------------
# Official checkpoint -> transformers names
# ---------------------------------------------------------------------------------------------------
_BLOCK_MAP = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",  # GELU(tanh) branch
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",  # linear branch
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}


def official_t5_to_hf_keys(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Rename an official `T5Encoder` state dict (`token_embedding.weight`, `blocks.N.attn.q.weight`,
    `blocks.N.ffn.gate.0.weight`, `norm.weight`, ...) to `UMT5EncoderModel` names. The token
    embedding is stored once under `shared.weight` and `encoder.embed_tokens.weight` (tied).
    Raises KeyError naming a key it does not know."""
    out: dict[str, Any] = {}
    for key, value in sd.items():
        if key == "token_embedding.weight":
            out["shared.weight"] = value
            out["encoder.embed_tokens.weight"] = value
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        else:
            m = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
            if m is None or m.group(2) not in _BLOCK_MAP:
                raise KeyError(f"unexpected key in the official T5 checkpoint: {key!r}")
            out[f"encoder.block.{m.group(1)}.{_BLOCK_MAP[m.group(2)]}"] = value
    return out


def umt5_config_from_official(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Infer `UMT5Config` arguments from official T5 tensor shapes (real and tiny checkpoints)."""
    for k in ("token_embedding.weight", "blocks.0.attn.q.weight", "blocks.0.ffn.fc1.weight",
              "blocks.0.pos_embedding.embedding.weight"):  # fmt: skip
        if k not in sd:
            raise KeyError(f"official T5 checkpoint lacks {k!r}")
    vocab, d_model = sd["token_embedding.weight"].shape
    inner = sd["blocks.0.attn.q.weight"].shape[0]
    buckets, heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
    layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    cfg = dict(UMT5_XXL_CONFIG)
    cfg.update(
        vocab_size=int(vocab),
        d_model=int(d_model),
        d_kv=int(inner) // int(heads),
        d_ff=int(sd["blocks.0.ffn.fc1.weight"].shape[0]),
        num_layers=int(layers),
        num_heads=int(heads),
        relative_attention_num_buckets=int(buckets),
    )
    return cfg


def build_umt5(cfg: Mapping[str, Any], device: torch.device | str = "meta") -> nn.Module:
    """A `UMT5EncoderModel` from config arguments, built on `device` (meta: no memory)."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(**cfg)
    with torch.device(device):
        model: nn.Module = UMT5EncoderModel(config)
    model.train(False)
    return model.requires_grad_(False)


# ---------------------------------------------------------------------------------------------------
# The encoder wrapper
# ---------------------------------------------------------------------------------------------------
class TextEncoder(nn.Module):
    """Tokenizer + UMT5 encoder. `encode(prompts) -> list of [L_i, D]` trimmed embeddings.

    Args:
        model: a `transformers.UMT5EncoderModel` (or anything with the same call signature
            returning `.last_hidden_state`).
        tokenizer: an HF tokenizer or `model.tokenizer.ByteTokenizer` (same call shape).
        text_len: token budget, 512 for every Wan2.2 model.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, text_len: int = TEXT_LEN) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.text_len = text_len

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def dim(self) -> int:
        return int(getattr(self.model, "config").d_model)  # noqa: B009 (typed Any on purpose)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        """Clean, tokenize to `text_len`, encode with the mask, trim each row to its length."""
        texts = [clean_prompt(p) for p in prompts]
        tok = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.text_len,
            add_special_tokens=True,
            return_tensors="pt",
        )
        ids = tok["input_ids"].to(self.device)  # [B, text_len]
        mask = tok["attention_mask"].to(self.device)  # [B, text_len]
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, text_len, D]
        lens = mask.gt(0).sum(dim=1).tolist()  # true lengths, EOS included
        return [hidden[i, :n] for i, n in enumerate(lens)]
