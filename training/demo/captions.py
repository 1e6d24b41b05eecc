"""A wider caption grammar for the demo world, and the held-out vocabulary its evaluation sets use.

One description (colour, shape, direction, background) can be phrased many ways: motion verbs
("moves", "heads", "rises", "sinks", ...), direction phrases ("up", "upwards", "toward the top",
"to the upper left", ...), word orders ("moving left, a red circle", "there is a red circle going
left", "green triangle going up"), articles and numbers ("a", "one", "a single", "the", none, "two"),
optional adjectives ("small", "big", "bright") and background phrases ("on black", "over a gray
background", "navy background, ...").

Two vocabularies are drawn from the same grammar:

* ``TRAIN``: the words and phrasings a training run on this grammar uses;
* ``HELD_OUT``: verbs, direction phrasings, adjectives, numbers and background phrasings kept out of
  every training caption. The paraphrase evaluation set (`training.demo.evaluate.paraphrase_cases`) is
  written with them, so it measures generalisation rather than memory.

``pseudo_word`` makes up words to stand where a verb or an adjective goes, so that a text encoder can
learn that an unfamiliar word says nothing about colour or direction. ``HELD_OUT_COMBOS`` names 24
(colour, shape, direction) triples for the combination evaluation set: the text encoder's caption
alignment never sees them described (and ``--hold-out-combos`` keeps them out of every clip of a
training run, for the stricter measurement of bench/RESULTS.md).

How the shipped ``wanserve-demo`` uses it: its DiT is pre-trained and fine-tuned on the narrower
canonical captions of `training.demo.world`; then stage ``align`` teaches a word-level text encoder
(``tokenizer_vocabulary``, every other word one unknown token) that the training grammar of this
module means what the canonical caption means, and stage ``refine`` trains both on such captions.
No caption of those two stages describes a ``HELD_OUT_COMBOS`` triple, and no caption of any stage
uses a ``HELD_OUT`` word (a test checks both). The earlier attempts (the whole chain on this grammar,
a byte-level alignment, known words) are in bench/RESULTS.md, "wanserve-demo and the caption grammar".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.demo.world import (
    BACKGROUNDS,
    COLOR_NAMES,
    DIRECTION_NAMES,
    SHAPES,
    join_clauses,
    simple_caption,
)

# ------------------------------------------------------------------------------------------------
# Vocabularies

# direction -> phrases (each says the direction on its own)
_TRAIN_DIRECTIONS: dict[str, tuple[str, ...]] = {
    "left": (
        "left",
        "to the left",
        "leftward",
        "leftwards",
        "towards the left",
        "toward the left",
        "to the left side",
    ),
    "right": (
        "right",
        "to the right",
        "rightward",
        "rightwards",
        "towards the right",
        "toward the right",
        "to the right side",
    ),
    "up": ("up", "upward", "upwards", "towards the top", "toward the top", "to the top"),
    "down": ("down", "downward", "downwards", "towards the bottom", "toward the bottom", "to the bottom"),
    "up-left": (
        "up and to the left",
        "up-left",
        "up and left",
        "diagonally up and left",
        "towards the top left",
        "toward the top left",
        "to the upper left",
    ),
    "up-right": (
        "up and to the right",
        "up-right",
        "up and right",
        "diagonally up and right",
        "towards the top right",
        "toward the top right",
        "to the upper right",
    ),
    "down-left": (
        "down and to the left",
        "down-left",
        "down and left",
        "diagonally down and left",
        "towards the bottom left",
        "toward the bottom left",
        "to the lower left",
    ),
    "down-right": (
        "down and to the right",
        "down-right",
        "down and right",
        "diagonally down and right",
        "towards the bottom right",
        "toward the bottom right",
        "to the lower right",
    ),
}
_HELD_OUT_DIRECTIONS: dict[str, tuple[str, ...]] = {
    "left": ("toward the left edge", "over to the left", "off to the left"),
    "right": ("toward the right edge", "over to the right", "off to the right"),
    "up": ("toward the top edge", "in an upward direction", "off toward the top"),
    "down": ("toward the bottom edge", "in a downward direction", "off toward the bottom"),
    "up-left": ("toward the top left corner", "off to the upper left"),
    "up-right": ("toward the top right corner", "off to the upper right"),
    "down-left": ("toward the bottom left corner", "off to the lower left"),
    "down-right": ("toward the bottom right corner", "off to the lower right"),
}
# horizontal part of a diagonal, said after a verb that already says up or down ("rises to the left")
_SIDE_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("to the left", "leftward", "towards the left"),
    "right": ("to the right", "rightward", "towards the right"),
}


@dataclass(frozen=True)
class Verb:
    third: str  # "moves"
    plural: str  # "move"
    ing: str  # "moving"
    vertical: str | None = None  # "up" / "down" when the verb says it ("rises", "sinks")


def _v(third: str, plural: str, ing: str, vertical: str | None = None) -> Verb:
    return Verb(third, plural, ing, vertical)


_TRAIN_VERBS: tuple[Verb, ...] = (
    _v("moves", "move", "moving"),
    _v("goes", "go", "going"),
    _v("heads", "head", "heading"),
    _v("travels", "travel", "travelling"),
    _v("runs", "run", "running"),
    _v("floats", "float", "floating"),
    _v("slides", "slide", "sliding"),
    _v("drifts", "drift", "drifting"),
    _v("glides", "glide", "gliding"),
    _v("rises", "rise", "rising", "up"),
    _v("climbs", "climb", "climbing", "up"),
    _v("falls", "fall", "falling", "down"),
    _v("sinks", "sink", "sinking", "down"),
    _v("drops", "drop", "dropping", "down"),
)
_HELD_OUT_VERBS: tuple[Verb, ...] = (
    _v("cruises", "cruise", "cruising"),
    _v("wanders", "wander", "wandering"),
    _v("zooms", "zoom", "zooming"),
    _v("sails", "sail", "sailing"),
    _v("hurries", "hurry", "hurrying"),
    _v("scoots", "scoot", "scooting"),
)

_TRAIN_ADJECTIVES = ("small", "big", "large", "bright", "tiny")
_HELD_OUT_ADJECTIVES = ("little", "shiny", "glowing", "solid")
_TRAIN_SPEEDS = {"slow": ("slowly",), "medium": ("steadily",), "fast": ("quickly", "fast")}
_HELD_OUT_SPEEDS = {"slow": ("gently", "lazily"), "medium": ("calmly",), "fast": ("swiftly", "rapidly")}
# singular determiners ("" = none, as in "green triangle going up")
_TRAIN_SINGULAR = ("a", "a", "a", "one", "a single", "the", "")
_HELD_OUT_SINGULAR = ("just one", "only one")
_PLURAL_WORDS = {2: ("two",), 3: ("three",)}
# background phrases; {bg} is "a black background"-style or the bare name
_TRAIN_BG_SUFFIX = (
    " on a {name} background",
    " over a {name} background",
    " on {bare}",
    " over {bare}",
    " with a {name} background",
    ", {name} background",
)
_TRAIN_BG_PREFIX = ("on a {name} background, ", "{name} background, ", "over {bare}, ")
_HELD_OUT_BG_SUFFIX = (" against a {name} backdrop", " in front of a {name} backdrop", " against {bare}")
_HELD_OUT_BG_PREFIX = ("against a {name} backdrop, ",)


@dataclass(frozen=True)
class Vocabulary:
    name: str
    directions: dict[str, tuple[str, ...]]
    verbs: tuple[Verb, ...]
    adjectives: tuple[str, ...]
    speeds: dict[str, tuple[str, ...]]
    singular: tuple[str, ...]
    bg_suffix: tuple[str, ...]
    bg_prefix: tuple[str, ...]


TRAIN = Vocabulary(
    "train",
    _TRAIN_DIRECTIONS,
    _TRAIN_VERBS,
    _TRAIN_ADJECTIVES,
    _TRAIN_SPEEDS,
    _TRAIN_SINGULAR,
    _TRAIN_BG_SUFFIX,
    _TRAIN_BG_PREFIX,
)
HELD_OUT = Vocabulary(
    "held-out",
    _HELD_OUT_DIRECTIONS,
    _HELD_OUT_VERBS,
    _HELD_OUT_ADJECTIVES,
    _HELD_OUT_SPEEDS,
    _HELD_OUT_SINGULAR,
    _HELD_OUT_BG_SUFFIX,
    _HELD_OUT_BG_PREFIX,
)

# (colour, shape, direction) triples no training clip shows: three per colour, three per direction,
# eight per shape, none of them in the fixed text or image evaluation sets (`text_cases(96)`,
# `image_cases(32)` of `training.demo.evaluate`; a test checks this).
HELD_OUT_COMBOS: frozenset[tuple[str, str, str]] = frozenset(
    (
        ("red", "circle", "up"),
        ("red", "square", "up-left"),
        ("red", "triangle", "left"),
        ("orange", "square", "up-right"),
        ("orange", "triangle", "down-right"),
        ("orange", "circle", "down"),
        ("yellow", "triangle", "left"),
        ("yellow", "circle", "up"),
        ("yellow", "square", "down-left"),
        ("green", "circle", "down"),
        ("green", "square", "up-right"),
        ("green", "triangle", "right"),
        ("cyan", "square", "down-left"),
        ("cyan", "triangle", "left"),
        ("cyan", "circle", "up-left"),
        ("blue", "triangle", "right"),
        ("blue", "circle", "down"),
        ("blue", "square", "down-right"),
        ("purple", "circle", "up-left"),
        ("purple", "square", "down-left"),
        ("purple", "triangle", "up"),
        ("white", "square", "down-right"),
        ("white", "triangle", "right"),
        ("white", "circle", "up-right"),
    )
)


def is_held_out_combo(colour: str | None, shape: str, direction: str) -> bool:
    return (colour, shape, direction) in HELD_OUT_COMBOS


# ------------------------------------------------------------------------------------------------
# Made-up words

_CONSONANTS = "bcdfghjklmnpqrstvwxz"
_VOWELS = "aeiou"
# a made-up word never contains a word that carries meaning in this world
_MEANINGFUL = (
    "up",
    "down",
    "left",
    "right",
    "top",
    "bottom",
    "low",
    "high",
    "red",
    "tan",
    "blue",
    "cyan",
    "rise",
    "fall",
    "sink",
    "drop",
    "climb",
    *COLOR_NAMES,
    *SHAPES,
)


def pseudo_word(rng: np.random.Generator) -> str:
    """A pronounceable made-up word ("brodel", "vusk") with none of the world's words inside."""
    while True:
        syllables = int(rng.integers(1, 4))
        word = "".join(
            _CONSONANTS[int(rng.integers(len(_CONSONANTS)))] + _VOWELS[int(rng.integers(len(_VOWELS)))]
            for _ in range(syllables)
        )
        if rng.random() < 0.6:
            word += _CONSONANTS[int(rng.integers(len(_CONSONANTS)))]
        if not any(m in word for m in _MEANINGFUL):
            return word


def sprinkle(text: str, rng: np.random.Generator) -> str:
    """``text`` with a made-up word put at a random word boundary ("a red vusk circle moves left")."""
    words = text.split(" ")
    words.insert(int(rng.integers(len(words) + 1)), pseudo_word(rng))
    return " ".join(words)


# Real English words that say nothing about colour, shape or direction, none of them held out. A made-up
# word ("vusk") looks like no real word; dropping these in as well teaches that an unfamiliar *real*
# word ("off", "corner", "calmly") says nothing either. Verbs that imply a direction are not here.
FILLER_WORDS: tuple[str, ...] = (
    "very", "really", "quite", "pretty", "so", "too", "now", "here", "still", "again", "also", "then",
    "nice", "cute", "lovely", "happy", "old", "new", "plain", "simple", "cool", "neat", "odd", "funny",
    "clean", "flat", "lone", "lonely", "proud", "brave", "calm", "busy", "quiet", "soft", "sharp",
    "smoothly", "softly", "silently", "quietly", "briskly", "happily", "evenly", "freely",
    "thing", "shape", "object", "item", "figure", "sprite", "icon", "scene", "frame", "video", "clip",
    "picture", "animation", "shot", "view", "screen", "space", "way", "path", "line", "side", "area",
    "at", "by", "with", "from", "into", "onto", "across", "along", "around", "through",
    "all", "some", "this", "that", "its", "their", "my", "our", "your", "it", "is", "was", "being",
    "skates", "swims", "flies", "rolls", "spins", "darts", "dashes", "shifts", "creeps", "crawls",
    "strolls", "marches", "walks", "swings", "bounces", "wobbles", "tumbles", "hovers", "coasts",
    "skating", "swimming", "flying", "rolling", "spinning", "darting", "dashing", "shifting",
    "creeping", "crawling", "strolling", "marching", "walking", "hovering", "coasting",
    "please", "show", "make", "draw", "render", "see", "watch", "look", "tiny", "huge", "cartoon",
)  # fmt: skip


def filler(text: str, rng: np.random.Generator, made_up: float = 0.5) -> str:
    """``text`` with a word that carries no meaning here put at a random word boundary: a made-up word
    ``made_up`` of the time, otherwise one of ``FILLER_WORDS``."""
    words = text.split(" ")
    word = pseudo_word(rng) if rng.random() < made_up else FILLER_WORDS[int(rng.integers(len(FILLER_WORDS)))]
    words.insert(int(rng.integers(len(words) + 1)), word)
    return " ".join(words)


def _key_words() -> frozenset[str]:
    """Words that carry colour, shape, direction, count or background (`obscure` keeps them)."""
    from training.demo.world import GRADIENTS

    keys = {*COLOR_NAMES, *SHAPES, *(s + "s" for s in SHAPES), "two", "three", "and", "diagonally"}
    for phrases in (*TRAIN.directions.values(), *_SIDE_PHRASES.values()):
        for p in phrases:
            keys.update(w for w in p.replace("-", " ").split() if w not in ("to", "the", "towards", "toward"))
    for v in TRAIN.verbs:
        if v.vertical is not None:
            keys.update((v.third, v.plural, v.ing))
    for name in (*BACKGROUNDS, *(g[0] for g in GRADIENTS)):
        keys.update(name.split())
    keys.discard("a")
    return frozenset(keys)


def obscure(text: str, rng: np.random.Generator, rate: float) -> str:
    """``text`` with each word that carries no colour, shape, direction, count or background replaced by
    a made-up word ``rate`` of the time ("a red circle moves to the left" -> "a red circle vusk to
    the left"): any of them may be one a reader never saw."""
    keys = _key_words()
    out = []
    for word in text.split(" "):
        bare = word.strip(",.").lower()
        if bare and bare not in keys and "-" not in bare and rng.random() < rate:
            made_up = pseudo_word(rng)
            word = word.replace(bare, made_up) if word.islower() else made_up + word[len(bare) :]
        out.append(word)
    return " ".join(out)


def _pseudo_verb(rng: np.random.Generator) -> Verb:
    w = pseudo_word(rng)
    return Verb(w + "s", w, w + "ing")


# ------------------------------------------------------------------------------------------------
# Phrases


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(det: str, next_word: str) -> str:
    if det == "a" and next_word[:1] in "aeiou":
        return "an"
    return det


def noun_phrase(
    count: int,
    colour: str | None,
    shape: str,
    rng: np.random.Generator,
    vocab: Vocabulary,
    *,
    pseudo: float = 0.0,
) -> str:
    """ "a small red circle", "one red circle", "red circle", "two squares", "three blue triangles"."""
    words: list[str] = []
    if rng.random() < 0.25:
        words.append(pseudo_word(rng) if rng.random() < pseudo else _pick(rng, vocab.adjectives))
    if colour is not None:
        words.append(colour)
    words.append(shape + "s" if count > 1 else shape)
    det = _pick(rng, _PLURAL_WORDS[count]) if count > 1 else _pick(rng, vocab.singular)
    if det:
        words.insert(0, _article(det, words[0]))
    return " ".join(words)


def _verb(direction: str, rng: np.random.Generator, vocab: Vocabulary, pseudo: float) -> Verb:
    if rng.random() < pseudo:
        return _pseudo_verb(rng)
    vertical = direction.split("-")[0] if direction.split("-")[0] in ("up", "down") else None
    fits = tuple(v for v in vocab.verbs if v.vertical is None or v.vertical == vertical)
    return fits[int(rng.integers(len(fits)))]


def _where(direction: str, verb: Verb, rng: np.random.Generator, vocab: Vocabulary) -> str:
    """The direction phrase after ``verb``; a verb that says up/down may leave (part of) it out."""
    if verb.vertical is not None:
        side = direction.split("-")[1] if "-" in direction else None
        roll = rng.random()
        if side is None and roll < 0.5:
            return ""  # "a red circle rises"
        if side is not None and roll < 0.5 and vocab is TRAIN:
            return _pick(rng, _SIDE_PHRASES[side])  # "rises to the left" = up-left
    return _pick(rng, vocab.directions[direction])


def _speed(speed: str, rng: np.random.Generator, vocab: Vocabulary) -> str:
    return _pick(rng, vocab.speeds[speed]) if rng.random() < 0.3 else ""


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def clause(
    count: int,
    colour: str | None,
    shape: str,
    direction: str,
    speed: str,
    rng: np.random.Generator,
    vocab: Vocabulary = TRAIN,
    *,
    pseudo: float = 0.0,
) -> str:
    """One object group doing one thing, in one of several word orders."""
    np_ = noun_phrase(count, colour, shape, rng, vocab, pseudo=pseudo)
    verb = _verb(direction, rng, vocab, pseudo)
    where = _where(direction, verb, rng, vocab)
    adv = _speed(speed, rng, vocab)
    finite = verb.third if count == 1 else verb.plural
    be = "is" if count == 1 else "are"
    order = int(rng.integers(8))
    if order <= 2:  # "a red circle (slowly) moves left (slowly)"
        return _join(np_, adv, finite, where) if rng.random() < 0.5 else _join(np_, finite, where, adv)
    if order == 3:  # "a red circle is moving left"
        return _join(np_, be, verb.ing, where, adv)
    if order == 4:  # "green triangle going up"
        return _join(np_, verb.ing, where, adv)
    if order == 5:  # "moving left, a red circle"
        return _join(verb.ing, where, adv) + ", " + np_
    if order == 6:  # "there is a red circle moving left"
        return _join("there", be, np_, verb.ing, where, adv)
    return _join(np_, "that", finite, where, adv)  # "a red circle that moves left"


def background_phrase(background: str, rng: np.random.Generator, vocab: Vocabulary) -> tuple[str, str]:
    """(prefix, suffix), one of them empty: "on a black background, ..." or "... over black"."""
    if background in BACKGROUNDS:
        name = bare = background
    else:  # a gradient: "a sunset gradient"
        name, bare = background.removeprefix("a ").removesuffix(" gradient") + " gradient", background
    if rng.random() < 0.3:
        text = _pick(rng, vocab.bg_prefix)
        return text.format(name=name, bare=bare), ""
    text = _pick(rng, vocab.bg_suffix)
    return "", text.format(name=name, bare=bare)


def _finish(text: str, rng: np.random.Generator) -> str:
    """People capitalise and punctuate now and then."""
    if rng.random() < 0.2:
        text = text[:1].upper() + text[1:]
    if rng.random() < 0.15:
        text += "."
    return text


def describe(
    groups: list[tuple[int, str | None, str, str, str]],
    background: str | None,
    rng: np.random.Generator,
    vocab: Vocabulary = TRAIN,
    *,
    pseudo: float = 0.0,
) -> str:
    """Caption for groups of identical objects (count, colour or None, shape, direction, speed) over a
    background (None: not mentioned). ``pseudo``: chance of a made-up verb or adjective per clause."""
    text = join_clauses([clause(*g, rng, vocab, pseudo=pseudo) for g in groups], rng)
    if background is not None:
        prefix, suffix = background_phrase(background, rng, vocab)
        text = prefix + text + suffix
    return _finish(text, rng)


def training_caption(
    colour: str,
    shape: str,
    direction: str,
    background: str | None,
    speed: str,
    rng: np.random.Generator,
    *,
    canonical_share: float = 0.3,
    pseudo: float = 0.1,
) -> str:
    """A single-object training caption: the canonical phrasing ``canonical_share`` of the time (what the
    fixed evaluation set and most examples say), otherwise any phrasing of the training grammar."""
    from training.demo.world import simple_caption

    if rng.random() < canonical_share:
        return simple_caption(colour, shape, direction, background)
    return describe([(1, colour, shape, direction, speed)], background, rng, pseudo=pseudo)


def allowed_direction(colour: str, shape: str, rng: np.random.Generator) -> str:
    """A random direction that does not make a held-out combination with this colour and shape."""
    while True:
        direction = DIRECTION_NAMES[int(rng.integers(len(DIRECTION_NAMES)))]
        if not is_held_out_combo(colour, shape, direction):
            return direction


def paraphrase(
    colour: str, shape: str, direction: str, background: str | None, rng: np.random.Generator
) -> str:
    """A caption for the held-out paraphrase set: always a held-out verb, and held-out direction
    phrasings, adjectives, adverbs, numbers and background phrasings about half of the time each (the
    rest from the training grammar); every word that carries colour or direction is one the training
    captions use, in a phrase they never use."""
    held = {part: bool(rng.random() < 0.5) for part in ("direction", "singular", "background")}
    vocab = Vocabulary(
        "paraphrase",
        HELD_OUT.directions if held["direction"] else TRAIN.directions,
        HELD_OUT.verbs,
        HELD_OUT.adjectives,
        HELD_OUT.speeds,
        HELD_OUT.singular if held["singular"] else TRAIN.singular,
        HELD_OUT.bg_suffix if held["background"] else TRAIN.bg_suffix,
        HELD_OUT.bg_prefix if held["background"] else TRAIN.bg_prefix,
    )
    return describe([(1, colour, shape, direction, "medium")], background, rng, vocab)


def training_words() -> frozenset[str]:
    """Every word of the training grammar (made-up words aside)."""
    words: set[str] = set()
    for phrases in TRAIN.directions.values():
        for p in phrases:
            words.update(p.split())
    for side in _SIDE_PHRASES.values():
        for p in side:
            words.update(p.split())
    for v in TRAIN.verbs:
        words.update((v.third, v.plural, v.ing))
    words.update(TRAIN.adjectives)
    for adverbs in TRAIN.speeds.values():
        words.update(adverbs)
    for det in (*TRAIN.singular, *[w for ws in _PLURAL_WORDS.values() for w in ws]):
        words.update(det.split())
    for template in (*TRAIN.bg_suffix, *TRAIN.bg_prefix):
        words.update(w.strip(",") for w in template.split() if "{" not in w)
    words.update(("an", "is", "are", "there", "that", "and", "while", "as", "moves"))
    return frozenset(w for w in words if w)


def tokenizer_vocabulary(scenes: int = 4000, seed: int = 2020) -> tuple[str, ...]:
    """The word vocabulary of the demo's word tokenizer (`model.tokenizer.WordTokenizer`), sorted:
    every word of the training grammar, of the pre-training scenes' captions (`world.make_caption`)
    and of the canonical phrasing, the ``FILLER_WORDS`` and punctuation. No held-out word is in it, so
    every held-out word reads as the one unknown token, like the made-up words of training."""
    from model.tokenizer import WordTokenizer
    from training.demo.world import GRADIENTS, WorldConfig, sample_scene

    words: set[str] = set()
    for w in (*training_words(), *FILLER_WORDS, *COLOR_NAMES, *SHAPES, *(s + "s" for s in SHAPES)):
        words.update(WordTokenizer.split(w))
    for name in (*BACKGROUNDS, *(g[0] for g in GRADIENTS), "background", "gradient"):
        words.update(WordTokenizer.split(name))
    rng = np.random.default_rng(seed)
    cfg = WorldConfig()
    for _ in range(scenes):
        _objects, background, caption = sample_scene(rng, cfg)
        words.update(WordTokenizer.split(caption))
        colour = COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        direction = DIRECTION_NAMES[int(rng.integers(len(DIRECTION_NAMES)))]
        words.update(WordTokenizer.split(simple_caption(colour, shape, direction, background)))
        caption = training_caption(colour, shape, direction, background, "fast", rng, pseudo=0.0)
        words.update(WordTokenizer.split(caption))
    words.update((",", ".", "-", "!", "'"))
    return tuple(sorted(words))
