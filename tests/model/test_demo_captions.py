"""The demo's caption grammar, its held-out vocabulary and the evaluation sets built on them.

The held-out paraphrase set only measures generalisation if no training caption uses a held-out word:
checked on exactly the captions the shipped demo's training stages draw (the multi-object scenes of
`training.demo.world` and the canonical single-object phrasing of the fine-tune).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from training.demo import captions as C
from training.demo import evaluate as E
from training.demo.train import _scene
from training.demo.world import COLOR_NAMES, DIRECTION_NAMES, SHAPES, simple_caption


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _held_out_words() -> set[str]:
    """Words of the held-out vocabulary that the training grammar never uses."""
    words: set[str] = set()
    for v in C.HELD_OUT.verbs:
        words |= {v.third, v.plural, v.ing}
    words |= set(C.HELD_OUT.adjectives)
    for adverbs in C.HELD_OUT.speeds.values():
        words |= set(adverbs)
    for phrase in (*C.HELD_OUT.singular, *C.HELD_OUT.bg_suffix, *C.HELD_OUT.bg_prefix):
        words |= _words(re.sub(r"\{\w+\}", "", phrase))
    for phrases in C.HELD_OUT.directions.values():
        for phrase in phrases:
            words |= _words(phrase)
    return words - C.training_words()


@pytest.fixture(scope="module")
def training_captions() -> list[str]:
    """The captions of the first 3000 pre-training scenes (of 8000) and every canonical single-object
    caption of the fine-tune."""
    singles = [
        simple_caption(c, s, d, bg)
        for c in COLOR_NAMES
        for s in SHAPES
        for d in DIRECTION_NAMES
        for bg in ("black", "gray", "navy", "dark green", None)
    ]
    return [_scene(i)[2] for i in range(3000)] + singles


def test_held_out_words_are_new(training_captions: list[str]) -> None:
    held = _held_out_words()
    # every kind of held-out word is really held out, not only the verbs
    assert {"cruises", "zooming", "shiny", "backdrop", "edge", "corner", "against", "calmly", "just"} <= held
    seen = set().union(*(_words(c) for c in training_captions))
    assert not held & seen
    for phrases in C.HELD_OUT.directions.values():
        for phrase in phrases:
            assert not any(phrase in c for c in training_captions), phrase


def test_the_grammar_covers_the_ways_people_say_it() -> None:
    rng = np.random.default_rng(2)
    directions = [DIRECTION_NAMES[i % 8] for i in range(3000)]
    grammar = [
        C.describe([(1 + i % 2, "red", "circle", d, "medium")], "black" if i % 3 else None, rng, pseudo=0.1)
        for i, d in enumerate(directions)
    ]
    seen = set().union(*(_words(c) for c in grammar))
    for verb in (
        "moves",
        "goes",
        "heads",
        "travels",
        "runs",
        "rises",
        "climbs",
        "falls",
        "sinks",
        "drops",
        "floats",
        "slides",
        "drifts",
        "going",
        "heading",
        "falling",
    ):
        assert verb in seen, verb
    for word in (
        "upward",
        "upwards",
        "downward",
        "leftward",
        "rightwards",
        "top",
        "bottom",
        "upper",
        "lower",
        "one",
        "single",
        "two",
        "small",
        "big",
        "bright",
        "diagonally",
        "there",
        "that",
    ):
        assert word in seen, word
    text = "\n".join(grammar)
    for phrase in ("toward the top", "to the left side", "on black", ", a ", "black background, "):
        assert phrase in text, phrase
    # made-up words stand where verbs and adjectives go, in about a tenth of the captions
    known = (
        C.training_words()
        | set(COLOR_NAMES)
        | set(SHAPES)
        | {s + "s" for s in SHAPES}
        | {"background", "gradient", "sunset", "gray", "navy", "dark", "black"}
    )
    unknown = [c for c in grammar if _words(c) - known]
    assert 0.03 < len(unknown) / len(grammar) < 0.2


def test_held_out_combinations_are_balanced_and_apart_from_the_fixed_sets() -> None:
    combos = C.HELD_OUT_COMBOS
    assert len(combos) == 24
    assert {c for c, _, _ in combos} == set(COLOR_NAMES)
    assert all(sum(d == x for _, _, d in combos) == 3 for x in DIRECTION_NAMES)
    fixed = {(c, s, d) for c, s, d, _, _ in E.text_cases(96)} | {
        (c, s, d) for c, s, d, _, _ in E.image_cases(32)
    }
    assert not fixed & combos


def test_evaluation_sets() -> None:
    held = _held_out_words()
    para = E.paraphrase_cases(24)
    assert len({p for p, *_ in para}) == 24
    for prompt, colour, shape, direction, _seed in para:
        words = _words(prompt)
        assert words & held, prompt  # at least its verb is new
        assert colour in words and shape in words, prompt
        assert not C.is_held_out_combo(colour, shape, direction)
    assert {d for *_, d, _ in para} == set(DIRECTION_NAMES)
    assert {c for _, c, *_ in para} == set(COLOR_NAMES)
    combo = E.combination_cases(24)
    assert {(c, s, d) for _, c, s, d, _ in combo} == C.HELD_OUT_COMBOS
    assert not set().union(*(_words(p) for p, *_ in combo)) & held
    # the sets are fixed: the same prompts every time
    assert E.paraphrase_cases(24) == para and E.combination_cases(24) == combo


def test_pseudo_words_carry_no_meaning() -> None:
    rng = np.random.default_rng(0)
    meaningful = ("up", "down", "left", "right", "top", "bottom", *COLOR_NAMES, *SHAPES)
    words = [C.pseudo_word(rng) for _ in range(5000)]
    assert len(set(words)) > 1000
    assert not any(m in w for w in words for m in meaningful)
    assert not set(words) & _held_out_words()


def test_verbs_that_say_up_or_down_only_go_with_such_directions() -> None:
    rng = np.random.default_rng(1)
    for _ in range(3000):
        direction = DIRECTION_NAMES[int(rng.integers(8))]
        text = C.describe([(1, "red", "circle", direction, "medium")], None, rng)
        words = _words(text)
        if words & {"rises", "rise", "rising", "climbs", "climbing"}:
            assert direction.startswith("up"), text
        if words & {"falls", "falling", "sinks", "sinking", "drops", "dropping"}:
            assert direction.startswith("down"), text
        assert "red" in words and "circle" in words


def test_held_out_combinations_can_be_kept_out_of_every_training_clip() -> None:
    from dataclasses import replace

    from training.demo import finetune as FT
    from training.demo.train import DEMO_WORLD
    from training.demo.world import sample_scene

    held = tuple(sorted(C.HELD_OUT_COMBOS))
    world = replace(DEMO_WORLD, held_out=held)
    shown = set()
    for i in range(600):
        objects, _, _ = sample_scene(np.random.default_rng(np.random.SeedSequence([20260, i])), world)
        shown |= {(o.color, o.shape, o.direction) for o in objects}
    assert not shown & C.HELD_OUT_COMBOS and len(shown) > 100
    specs = FT.single_object_specs(2000, held_out=held)
    assert not {(c, s, d) for _, c, s, d, _, _ in specs} & C.HELD_OUT_COMBOS
    # without the option, the clips are those of the shipped recipe (some show held-out triples)
    assert {(c, s, d) for _, c, s, d, _, _ in FT.single_object_specs(2000)} & C.HELD_OUT_COMBOS


def test_the_fine_tune_wide_captions_use_no_held_out_word() -> None:
    from training.demo import finetune as FT

    specs = FT.single_object_specs(400)
    variants = FT.caption_variants(specs, FT.CaptionMix(variants=4), seed=7)
    flat = [c for caps in variants for c in caps]
    assert not set().union(*(_words(c) for c in flat)) & _held_out_words()
    canonical = sum(
        c == simple_caption(col, s, d, None) or c == simple_caption(col, s, d, bg)
        for (bg, col, s, d, _, _), caps in zip(specs, variants, strict=True)
        for c in caps
    )
    assert 0.4 < canonical / len(flat) < 0.6  # CaptionMix.canonical_share
    assert len(set(flat)) > 0.5 * len(flat)


def test_the_caption_alignment_uses_no_held_out_word_and_pairs_each_phrasing_with_its_canonical() -> None:
    from training.demo import align as A
    from training.demo import finetune as FT

    specs = FT.single_object_specs(400, held_out=tuple(C.HELD_OUT_COMBOS))
    students, teachers = A.caption_pairs(specs, A.AlignConfig(variants=4))
    flat = [c for caps in students for c in caps]
    assert not set().union(*(_words(c) for c in flat)) & _held_out_words()
    assert not set(C.FILLER_WORDS) & _held_out_words()
    meaningful = ("up", "down", "left", "right", "top", "bottom", "lower", "upper", *COLOR_NAMES, *SHAPES)
    assert not [w for w in C.FILLER_WORDS if any(m in w for m in meaningful)]
    for (bg, colour, shape, direction, _, _), caps in zip(specs, teachers, strict=True):
        # the teacher's caption is the canonical one, naming the background or not
        assert set(caps) <= {simple_caption(colour, shape, direction, s) for s in (bg, None)}
    for (_, colour, _, _, _, _), caps in zip(specs, students, strict=True):
        assert all(colour in c.lower() for c in caps)  # a paraphrase keeps the colour word
    with_filler = sum(any(w in C.FILLER_WORDS for w in c.split()) for c in flat)
    assert with_filler > 0.1 * len(flat)
    assert len(set(flat)) > 0.8 * len(flat)


def test_the_alignment_and_the_refinement_never_describe_a_held_out_combination() -> None:
    """The shipped recipe's alignment and refinement use the fine-tune's clips minus those of the
    held-out triples, so the combination set asks the text encoder for combinations it never saw."""
    import torch

    from training.demo import align as A
    from training.demo import finetune as FT

    specs = FT.single_object_specs(600)  # the shipped fine-tune's clips include the triples
    held = [C.is_held_out_combo(c, s, d) for _, c, s, d, _, _ in specs]
    assert sum(held) > 10
    latents, kept = A.held_in(torch.arange(len(specs)), specs, A.AlignConfig())
    assert A.AlignConfig().hold_out_combos
    assert latents.tolist() == [i for i, h in enumerate(held) if not h]
    assert kept == [spec for spec, h in zip(specs, held, strict=True) if not h]
    assert not any(C.is_held_out_combo(c, s, d) for _, c, s, d, _, _ in kept)
    refine = A.refine_captions(kept, A.AlignConfig(variants=2))
    assert len(refine) == len(kept)  # one list of captions per kept clip, describing that clip
    for (_, colour, _, _, _, _), caps in zip(kept, refine, strict=True):
        assert all(colour in c.lower() for c in caps)
    everything, _ = A.held_in(torch.arange(len(specs)), specs, A.AlignConfig(hold_out_combos=False))
    assert len(everything) == len(specs)


def test_the_word_vocabulary_holds_every_training_word_and_no_held_out_one(
    training_captions: list[str],
) -> None:
    from model.tokenizer import WordTokenizer

    vocab = C.tokenizer_vocabulary()
    assert vocab == C.tokenizer_vocabulary() and list(vocab) == sorted(set(vocab))  # reproducible
    assert not _held_out_words() & set(vocab)
    tok = WordTokenizer(vocab)
    rng = np.random.default_rng(3)
    grammar = [
        C.training_caption(c, s, d, bg, "fast", rng, canonical_share=0.2, pseudo=0.0)
        for c in COLOR_NAMES
        for s in SHAPES
        for d in DIRECTION_NAMES
        for bg in ("black", "a sunset gradient", None)
    ]
    for caption in [*training_captions[:500], *grammar]:
        assert tok.unk_token_id not in tok.encode(caption), caption
    # what a held-out paraphrase leaves for the encoder: the words it knows, and unknown tokens
    ids = tok.encode("Just one purple circle wandering toward the bottom edge over navy.")
    assert tok.decode(ids) == "<unk> one purple circle <unk> toward the bottom <unk> over navy ."


def test_obscuring_keeps_every_word_that_says_colour_shape_direction_count_or_background() -> None:
    rng = np.random.default_rng(0)
    keys = {"red", "circle", "two", "squares", "up", "left", "top", "lower", "rises", "navy", "and"}
    changed = 0
    for _ in range(200):
        text = "two red squares rise up and to the left while a circle rises toward the top on navy"
        out = C.obscure(text, rng, 0.5)
        assert len(out.split()) == len(text.split())
        for before, after in zip(text.split(), out.split(), strict=True):
            if before in keys:
                assert after == before
            elif after != before:
                changed += 1
                assert not C._key_words() & {after}
    assert 200 * 7 * 0.35 < changed < 200 * 7 * 0.65  # 7 replaceable words: to the while a toward the on
    everything = C.obscure("A red circle moves left.", np.random.default_rng(1), 1.0).split()
    assert everything[1:3] == ["red", "circle"] and everything[-1] == "left." and everything[3] != "moves"
