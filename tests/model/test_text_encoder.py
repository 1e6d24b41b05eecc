"""Text side: prompt cleaning, byte tokenizer, official T5 key mapping and numerics, trimming/padding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model.text_encoder import (
    TextEncoder,
    build_umt5,
    clean_prompt,
    official_t5_to_hf_keys,
    pad_embeddings,
    umt5_config_from_official,
)
from model.tokenizer import ByteTokenizer

TINY = dict(
    vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
    relative_attention_num_buckets=8, relative_attention_max_distance=128, dropout_rate=0.0,
    feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6,
)  # fmt: skip


def test_clean_prompt_matches_the_official_rules():
    pytest.importorskip("ftfy")
    assert clean_prompt("  a   cat\n\tsits  ") == "a cat sits"
    assert clean_prompt("fish &amp;amp; chips") == "fish & chips"  # html.unescape twice
    assert clean_prompt("cafÃ©") == "café"  # ftfy mojibake repair


def test_byte_tokenizer_matches_byt5():
    from transformers import ByT5Tokenizer

    ref, ours = ByT5Tokenizer(), ByteTokenizer()
    texts = ["a cat", "héllo wörld 猫", "x" * 600]
    kw = dict(
        padding="max_length", truncation=True, max_length=512, add_special_tokens=True, return_tensors="pt"
    )
    a, b = ref(texts, **kw), ours(texts, **kw)
    assert torch.equal(a["input_ids"], b["input_ids"])
    assert torch.equal(a["attention_mask"], b["attention_mask"])
    assert ours.decode(b["input_ids"][1]) == texts[1]


def _official_t5_state(seed: int) -> dict[str, torch.Tensor]:
    """A random state dict with the official `T5Encoder` key names (tiny sizes)."""
    g = torch.Generator().manual_seed(seed)
    d, inner, ff, heads, buckets, vocab = 32, 32, 64, 4, 8, 384

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.2

    sd = {"token_embedding.weight": r(vocab, d), "norm.weight": 1 + r(d)}
    for i in range(2):
        sd |= {
            f"blocks.{i}.norm1.weight": 1 + r(d),
            f"blocks.{i}.attn.q.weight": r(inner, d),
            f"blocks.{i}.attn.k.weight": r(inner, d),
            f"blocks.{i}.attn.v.weight": r(inner, d),
            f"blocks.{i}.attn.o.weight": r(d, inner),
            f"blocks.{i}.norm2.weight": 1 + r(d),
            f"blocks.{i}.ffn.gate.0.weight": r(ff, d),
            f"blocks.{i}.ffn.fc1.weight": r(ff, d),
            f"blocks.{i}.ffn.fc2.weight": r(d, ff),
            f"blocks.{i}.pos_embedding.embedding.weight": r(buckets, heads),
        }
    return sd


def _official_t5_forward(sd: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The official umt5 encoder written from its formulas (wan/modules/t5.py), for reference."""
    heads, buckets, max_dist, eps = 4, 8, 128, 1e-6

    def norm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps) * w

    def bucket(rel: torch.Tensor) -> torch.Tensor:  # bidirectional
        nb = buckets // 2
        out = (rel > 0).long() * nb
        rel = rel.abs()
        exact = nb // 2
        large = exact + (torch.log(rel.float() / exact) / math.log(max_dist / exact) * (nb - exact)).long()
        large = large.clamp(max=nb - 1)
        return out + torch.where(rel < exact, rel, large)

    b, L = ids.shape
    pos = torch.arange(L)
    rel = pos[None, :] - pos[:, None]  # key - query
    x = sd["token_embedding.weight"][ids]
    for i in range(2):
        p = f"blocks.{i}."
        h = norm(x, sd[p + "norm1.weight"])
        q, k, v = (F.linear(h, sd[p + f"attn.{n}.weight"]).view(b, L, heads, -1) for n in "qkv")
        bias = sd[p + "pos_embedding.embedding.weight"][bucket(rel)].permute(2, 0, 1)[None]  # [1, n, L, L]
        logits = torch.einsum("binc,bjnc->bnij", q, k) + bias  # no 1/sqrt(d) scaling
        logits = logits.masked_fill(mask.view(b, 1, 1, L) == 0, torch.finfo(logits.dtype).min)
        attn = logits.float().softmax(-1)
        o = torch.einsum("bnij,bjnc->binc", attn, v).reshape(b, L, -1)
        x = x + F.linear(o, sd[p + "attn.o.weight"])
        h = norm(x, sd[p + "norm2.weight"])
        gate = F.gelu(F.linear(h, sd[p + "ffn.gate.0.weight"]), approximate="tanh")
        x = x + F.linear(F.linear(h, sd[p + "ffn.fc1.weight"]) * gate, sd[p + "ffn.fc2.weight"])
    return norm(x, sd["norm.weight"])


def test_official_t5_keys_load_into_umt5_and_match_the_official_formulas():
    sd = _official_t5_state(0)
    cfg = umt5_config_from_official(sd)
    sizes = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads")
    assert [cfg[k] for k in sizes] == [384, 32, 8, 64, 2, 4]
    assert cfg["relative_attention_num_buckets"] == 8
    model = build_umt5(cfg, "cpu")
    model.load_state_dict(official_t5_to_hf_keys(sd), strict=True)
    tok = ByteTokenizer()(["a small cat", "a much longer prompt with more bytes"], max_length=48)
    ref = _official_t5_forward(sd, tok["input_ids"], tok["attention_mask"])
    with torch.no_grad():
        got = model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
    m = tok["attention_mask"].bool()
    assert (got[m] - ref[m]).abs().max().item() < 1e-5


def test_unknown_official_key_is_named():
    with pytest.raises(KeyError, match="blocks.0.bogus"):
        official_t5_to_hf_keys({"blocks.0.bogus.weight": torch.zeros(1)})


def test_encode_trims_to_true_length_and_pads_with_zeros():
    torch.manual_seed(0)
    te = TextEncoder(build_umt5(TINY, "cpu"), ByteTokenizer())
    embs = te.encode(["a cat", "  héllo   world "])
    assert [e.shape for e in embs] == [(6, 32), (13, 32)]  # bytes of the cleaned text + </s>
    ctx = pad_embeddings(embs, 512)
    assert ctx.shape == (2, 512, 32)
    assert torch.equal(ctx[0, :6], embs[0]) and ctx[0, 6:].abs().sum() == 0
    assert ctx[1, 13:].abs().sum() == 0


def test_encode_matches_diffusers_prompt_embeddings():
    diffusers = pytest.importorskip("diffusers")
    pytest.importorskip("ftfy")
    from transformers import ByT5Tokenizer

    torch.manual_seed(0)
    model = build_umt5(TINY, "cpu")
    te = TextEncoder(model, ByteTokenizer())
    pipe = diffusers.WanPipeline(
        tokenizer=ByT5Tokenizer(), text_encoder=model, vae=None, scheduler=None, transformer=None
    )
    prompt = "fish &amp;amp; chips   on a   plate"
    ref, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=512)
    ours = pad_embeddings(te.encode([prompt]), 512)
    assert (ours - ref).abs().max().item() < 1e-6


def test_word_tokenizer_reads_known_words_and_one_unknown_token(tmp_path) -> None:
    from model.loading import CheckpointError, load_tokenizer
    from model.tokenizer import WORD_MARKER_FILE, WordTokenizer

    tok = WordTokenizer(["a", "red", "circle", "moves", "left", ",", "-"])
    assert tok.vocab_size == 10 and tok.encode("A red circle moves LEFT") == [3, 4, 5, 6, 7, 1]
    assert tok.encode("a red circle zooms up-left, fast") == [3, 4, 5, 2, 2, 9, 7, 8, 2, 1]
    assert tok.decode(tok.encode("red zooms")) == "red <unk>"
    out = tok(["red circle", "a red circle moves left"], max_length=4)
    assert out["input_ids"].tolist() == [[4, 5, 1, 0], [3, 4, 5, 1]]  # the cut keeps </s>
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    with pytest.raises(ValueError, match="single tokens"):
        WordTokenizer(["red circle"])

    tok.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok", "tokenizer")
    assert isinstance(loaded, WordTokenizer) and loaded.vocab == tok.vocab
    (tmp_path / "tok" / WORD_MARKER_FILE).write_text('{"tokenizer": "something else"}')
    with pytest.raises(CheckpointError, match="word vocabulary"):
        load_tokenizer(tmp_path / "tok", "tokenizer")
    ByteTokenizer().save_pretrained(tmp_path / "bytes")
    assert isinstance(load_tokenizer(tmp_path / "bytes", "tokenizer"), ByteTokenizer)


def test_byte_tokenizer_with_known_words_leaves_out_the_others(tmp_path) -> None:
    from model.loading import load_tokenizer

    tok = ByteTokenizer(["a", "red", "circle", "to", "the", "left", "on", "black"])
    assert tok.filter("Zooming off to the left, a red circle.") == "to the left, a red circle."
    assert tok.filter("a red circle to the left on black") == "a red circle to the left on black"
    assert tok.encode("a red vusk circle") == ByteTokenizer().encode("a red circle")
    tok.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok", "tokenizer")
    assert isinstance(loaded, ByteTokenizer) and loaded.known_words == tok.known_words
    ByteTokenizer().save_pretrained(tmp_path / "plain")
    plain = load_tokenizer(tmp_path / "plain", "tokenizer")
    assert plain.known_words is None and plain.filter("Zooming off") == "Zooming off"
