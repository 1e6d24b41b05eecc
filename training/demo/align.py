"""Caption alignment of the demo's text encoder (stage ``align`` of training/train_demo.py).

After the fine-tune the DiT follows the canonical phrasing ("a red circle moves to the left on a
black background") but not the many other ways people say the same thing. Teaching the DiT a wide
grammar directly (flow matching on wide captions) costs it motion: the direction has to be found in
a byte sequence whose layout keeps changing, and within the recipe's steps the DiT learns the average
of the directions instead (bench/RESULTS.md, "wanserve-demo and the caption grammar").

This stage leaves the DiT alone and teaches the **text encoder** that a paraphrase means what the
canonical caption means, measured where it matters, at the DiT's output: for a noisy latent of a
clip, the frozen DiT given the student encoder's context for a wide-grammar caption must predict what
it predicts given the frozen teacher encoder's context for the clip's canonical caption

    loss = || DiT(x_t, t, student(paraphrase)) - DiT(x_t, t, teacher(canonical)) ||^2

(frames pinned in image mode carry no loss). The paraphrases come from the training grammar of
`training.demo.captions` with made-up verbs and adjectives, and made-up or real but meaningless
words dropped in anywhere (`captions.filler`), so that a word the encoder never saw learns to say
nothing; canonical captions and the empty prompt (the unconditional branch of guidance) are in the
mix with themselves as target, so what already worked keeps working. The student may read more
text positions than the teacher (``student_len``): the DiT cross-attends over the zero padding as
well, and the student learns to make up for the longer context, which long paraphrases need. It may
also have more layers than the teacher (``extra_layers``, added as the identity, `deepen`): two
layers of a byte-level encoder have little room to compose words into phrases.

Two ways to keep a word the encoder never saw from moving what it reads (bench/RESULTS.md, "word
tokens and known words"): ``word_tokens``, a student that reads words of the training vocabulary
(`captions.tokenizer_vocabulary`, `model.tokenizer.WordTokenizer`; every other word is one unknown
token; the word embeddings start as the mean of their bytes' embeddings), and ``known_words``, a
byte-level student whose tokenizer leaves unknown words out. With either, ``obscure`` replaces some of
the words that name no colour, shape, direction, count or background by made-up ones, so that any of
them may be unknown at serving time.

The shipped recipe uses the word-level student (``word_tokens``) and leaves the clips of the
``captions.HELD_OUT_COMBOS`` triples out (``hold_out_combos``), so the combination evaluation set
asks the encoder for word combinations it was never taught; stage ``refine`` of
training/train_demo.py then trains DiT and student together on captions drawn like these
(`refine_captions`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from model.tokenizer import ByteTokenizer, WordTokenizer
from training.demo import train as T
from training.demo.finetune import Spec
from training.demo.world import simple_caption


@dataclass(frozen=True)
class AlignConfig:
    steps: int = 2000
    batch: int = 32
    lr: float = 5e-3
    warmup: int = 50
    seed: int = 11
    student_len: int = 96  # text positions of the aligned encoder (and of the exported DiT)
    variants: int = 16  # captions per clip, one drawn per step
    canonical_share: float = 0.15  # of the variants, the canonical phrasing itself
    empty_share: float = 0.05  # of the samples, the empty prompt (guidance's unconditional branch)
    pseudo: float = 0.35  # made-up verb or adjective
    filler: float = 0.5  # a meaningless word at a random place (and then a second one, as often)
    image_mode_prob: float = 0.25
    ema_decay: float = 0.995
    extra_layers: int = 0  # encoder layers added to the student (identity at the start)
    # compare the clean-latent predictions x0 = x_t - sigma v instead of v: weighs each sample by
    # sigma^2, i.e. towards the noisy steps where the layout and the motion are decided
    x0_space: bool = True
    # the student reads words of `captions.tokenizer_vocabulary` (`model.tokenizer.WordTokenizer`)
    # instead of bytes: a word it never saw is the one unknown token, like the made-up words here
    word_tokens: bool = False
    # word tokens only: share of the replaceable words (those that name no colour, shape, direction,
    # count or background) replaced by made-up words, i.e. by the unknown token
    obscure: float = 0.15
    # the student's byte tokenizer leaves out words outside `captions.tokenizer_vocabulary` (made-up
    # ones included), so a word it never saw cannot shift what it reads (`obscure` applies too)
    known_words: bool = False
    # leave the clips of `captions.HELD_OUT_COMBOS` triples out, so that no caption the encoder is
    # taught describes one: the combination set then measures how the encoder composes words
    hold_out_combos: bool = True


def deepen(t5: nn.Module, extra: int) -> nn.Module:
    """A copy of the UMT5 encoder ``t5`` with ``extra`` more layers after its own that start as the
    identity (a copy of the last layer with its attention output and feed-forward output zeroed: both
    sit on residual branches), so the deeper encoder computes exactly what ``t5`` does."""
    from transformers import UMT5EncoderModel

    if extra == 0:
        return copy.deepcopy(t5)
    config: Any = copy.deepcopy(t5.config)
    n = int(config.num_layers)
    config.num_layers = n + extra
    deeper = UMT5EncoderModel(config)
    sd = t5.state_dict()
    last = f"encoder.block.{n - 1}."
    for i in range(n, n + extra):
        for key, value in list(sd.items()):
            if key.startswith(last):
                new = f"encoder.block.{i}." + key.removeprefix(last)
                zero = key.endswith(("SelfAttention.o.weight", "DenseReluDense.wo.weight"))
                sd[new] = torch.zeros_like(value) if zero else value.clone()
    deeper.load_state_dict(sd)
    return deeper


def word_student(teacher: nn.Module, tokenizer: WordTokenizer) -> nn.Module:
    """A copy of the byte-level encoder ``teacher`` that reads the word ids of ``tokenizer``: the same
    layers, and each word's embedding starts as the mean of its bytes' embeddings (the unknown token
    as the mean over the vocabulary's words)."""
    from transformers import UMT5EncoderModel

    config: Any = copy.deepcopy(teacher.config)
    config.vocab_size = tokenizer.vocab_size
    student = UMT5EncoderModel(config)
    sd = {k: v.clone() for k, v in teacher.state_dict().items()}
    byte_emb = sd["shared.weight"]  # [384, D]
    emb = torch.zeros(tokenizer.vocab_size, byte_emb.shape[1])
    emb[: tokenizer.offset] = byte_emb[: tokenizer.offset]  # pad, eos, unk
    byte_tok = ByteTokenizer()
    for i, word in enumerate(tokenizer.vocab):
        emb[tokenizer.offset + i] = byte_emb[byte_tok.encode(word, add_special_tokens=False)].mean(0)
    emb[tokenizer.unk_token_id] = emb[tokenizer.offset :].mean(0)
    sd["shared.weight"] = emb
    sd["encoder.embed_tokens.weight"] = emb.clone()
    student.load_state_dict(sd)
    return student


def student_tokenizer(cfg: AlignConfig) -> ByteTokenizer | WordTokenizer:
    from training.demo.captions import tokenizer_vocabulary

    if cfg.word_tokens:
        return WordTokenizer(tokenizer_vocabulary())
    return ByteTokenizer(tokenizer_vocabulary() if cfg.known_words else None)


def caption_pairs(specs: list[Spec], cfg: AlignConfig) -> tuple[list[list[str]], list[list[str]]]:
    """Per clip, ``cfg.variants`` (student caption, teacher caption) pairs: a phrasing of the training
    grammar and the canonical caption that names the same background (or none)."""
    from training.demo.captions import filler, obscure, training_caption

    rng = np.random.default_rng(np.random.SeedSequence([5151, cfg.seed]))
    students, teachers = [], []
    for bg, colour, shape, direction, speed, _ in specs:
        s_caps, t_caps = [], []
        for _k in range(cfg.variants):
            stated = bg if rng.random() < 0.7 else None
            canonical = simple_caption(colour, shape, direction, stated)
            cap = training_caption(
                colour, shape, direction, stated, speed, rng,
                canonical_share=cfg.canonical_share, pseudo=cfg.pseudo,
            )  # fmt: skip
            if cap != canonical and (cfg.word_tokens or cfg.known_words) and cfg.obscure > 0:
                cap = obscure(cap, rng, cfg.obscure)
            if cap != canonical and rng.random() < cfg.filler:
                cap = filler(cap, rng)
                if rng.random() < cfg.filler:
                    cap = filler(cap, rng)
            s_caps.append(cap)
            t_caps.append(canonical)
        students.append(s_caps)
        teachers.append(t_caps)
    return students, teachers


def refine_captions(specs: list[Spec], cfg: AlignConfig) -> list[list[str]]:
    """Per clip, captions drawn like the alignment's student captions (another draw), for stage
    ``refine`` of training/train_demo.py (flow matching of the DiT and the aligned encoder)."""
    students, _ = caption_pairs(specs, dataclasses.replace(cfg, seed=cfg.seed + 1))
    return students


def held_in(latents: torch.Tensor, specs: list[Spec], cfg: AlignConfig) -> tuple[torch.Tensor, list[Spec]]:
    """The clips the stage may use: all, or (``cfg.hold_out_combos``) those of no held-out triple."""
    if not cfg.hold_out_combos:
        return latents, specs
    from training.demo.captions import is_held_out_combo

    keep = [i for i, (_, c, s, d, _, _) in enumerate(specs) if not is_held_out_combo(c, s, d)]
    return latents[keep], [specs[i] for i in keep]


def _tokenize(
    captions: list[str], length: int, tokenizer: ByteTokenizer | WordTokenizer | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    from model.text_encoder import clean_prompt

    tok = (tokenizer or ByteTokenizer())(
        [clean_prompt(c) for c in captions], padding="max_length", truncation=True, max_length=length
    )
    return tok["input_ids"], tok["attention_mask"]


def align_text_encoder(
    dit: nn.Module,
    t5: nn.Module,
    latents: torch.Tensor,
    specs: list[Spec],
    cfg: AlignConfig,
    *,
    teacher_len: int,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """Train a student copy of ``t5`` (``cfg.extra_layers`` deeper, reading words if
    ``cfg.word_tokens``) against the DiT and ``t5`` as the teacher, both frozen; returns the student
    with its EMA weights. ``latents``: normalised clips [n, z, f, h, w] that ``specs`` describe."""
    dit.eval()
    for p in dit.parameters():
        p.requires_grad_(False)
    teacher = t5.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    latents, specs = held_in(latents, specs, cfg)
    tokenizer = student_tokenizer(cfg)
    t5 = deepen(teacher, cfg.extra_layers)
    if isinstance(tokenizer, WordTokenizer):
        t5 = word_student(t5, tokenizer)
    t5.train()
    for p in t5.parameters():
        p.requires_grad_(True)

    students, teachers = caption_pairs(specs, cfg)
    n, k_var = latents.shape[0], cfg.variants
    s_ids, s_mask = _tokenize([c for caps in students for c in caps], cfg.student_len, tokenizer)
    t_ids, t_mask = _tokenize([c for caps in teachers for c in caps], teacher_len)
    s_ids, s_mask = s_ids.view(n, k_var, -1), s_mask.view(n, k_var, -1)
    t_ids, t_mask = t_ids.view(n, k_var, -1), t_mask.view(n, k_var, -1)
    e_s_ids, e_s_mask = _tokenize([""], cfg.student_len, tokenizer)
    e_t_ids, e_t_mask = _tokenize([""], teacher_len)

    opt = torch.optim.AdamW(t5.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.99))
    ema = T.EMA([t5], cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    running = 0.0
    for step in range(cfg.steps):
        idx = torch.randint(0, n, (cfg.batch,), generator=gen)
        k = torch.randint(0, k_var, (cfg.batch,), generator=gen)
        sid, sm = s_ids[idx, k].clone(), s_mask[idx, k].clone()
        tid, tm = t_ids[idx, k].clone(), t_mask[idx, k].clone()
        empty = torch.rand(cfg.batch, generator=gen) < cfg.empty_share
        sid[empty], sm[empty], tid[empty], tm[empty] = e_s_ids[0], e_s_mask[0], e_t_ids[0], e_t_mask[0]
        image_mode = torch.rand(cfg.batch, generator=gen) < cfg.image_mode_prob
        for g in opt.param_groups:
            g["lr"] = T._lr(step, cfg.steps, cfg.lr, cfg.warmup)

        xt, t, _, noisy, s = T.noised(latents[idx], image_mode, gen)

        with torch.no_grad():
            target = dit(xt, t, T.encode_text(teacher, tid, tm))
        pred = dit(xt, t, T.encode_text(t5, sid, sm))
        se = (pred - target).pow(2) * noisy
        if cfg.x0_space:
            se = se * s.pow(2) / s.pow(2).mean()
        loss = se.sum() / noisy.expand_as(se).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(t5.parameters()), 1.0)
        opt.step()
        ema.update(min(cfg.ema_decay, (1 + step) / (10 + step)))
        running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
        if log is not None and (step % 100 == 0 or step == cfg.steps - 1):
            log(f"align step {step} loss {running:.5f}")
    ema.swap()
    t5.eval()
    for p in dit.parameters():
        p.requires_grad_(True)
    return t5
