"""A tiny procedural video world for the ``wanserve-demo`` model.

Clips show a few coloured shapes (circle, square, triangle) moving in straight lines over a plain
or gradient background.  Every clip comes with a natural-language caption.  Generation is fully
deterministic: ``make_clip(seed)`` always returns the same clip and caption.

Videos are ``float32`` arrays ``[3, F, H, W]`` in ``[-1, 1]`` (the layout the VAE consumes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Object colours (RGB in [0, 1]).  Names are single words so captions stay easy to read.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.10, 0.10),
    "orange": (1.00, 0.55, 0.00),
    "yellow": (0.98, 0.92, 0.10),
    "green": (0.10, 0.80, 0.15),
    "cyan": (0.10, 0.90, 0.95),
    "blue": (0.15, 0.30, 1.00),
    "purple": (0.60, 0.15, 0.85),
    "white": (1.00, 1.00, 1.00),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

# Unit direction vectors in image coordinates (x to the right, y downwards).
_D = 1.0 / math.sqrt(2.0)
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-_D, -_D),
    "up-right": (_D, -_D),
    "down-left": (-_D, _D),
    "down-right": (_D, _D),
}
DIRECTION_NAMES: tuple[str, ...] = tuple(DIRECTIONS)

# Speeds in units of the clip's width per frame interval (scaled to pixels at render time).
SPEEDS: dict[str, float] = {"slow": 0.030, "medium": 0.045, "fast": 0.060}

# Plain backgrounds (dark or neutral so every object colour stays visible on most of them).
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "black": (0.0, 0.0, 0.0),
    "gray": (0.45, 0.45, 0.45),
    "navy": (0.05, 0.05, 0.30),
    "dark green": (0.03, 0.22, 0.06),
}
# Gradient backgrounds: (name, start colour, end colour, axis) — axis "v" top→bottom, "h" left→right.
GRADIENTS: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float], str], ...] = (
    ("a dark blue gradient", (0.0, 0.0, 0.0), (0.05, 0.10, 0.45), "v"),
    ("a gray gradient", (0.15, 0.15, 0.15), (0.55, 0.55, 0.55), "h"),
    ("a sunset gradient", (0.25, 0.02, 0.15), (0.05, 0.02, 0.20), "v"),
    ("a dark green gradient", (0.0, 0.0, 0.0), (0.05, 0.30, 0.10), "h"),
)

NUMBER_WORDS = {1: "a", 2: "two", 3: "three"}

# Minimum colour distance between an object and its background (RGB, [0, 1] units).
_MIN_CONTRAST = 0.45


@dataclass(frozen=True)
class WorldObject:
    shape: str
    color: str
    direction: str
    speed: str
    size: float  # radius in pixels
    start: tuple[float, float]  # centre (x, y) in pixels at frame 0


@dataclass
class Clip:
    video: np.ndarray  # [3, F, H, W] float32 in [-1, 1]
    caption: str
    objects: list[WorldObject] = field(default_factory=list)
    background: str = "black"


@dataclass(frozen=True)
class WorldConfig:
    height: int = 32
    width: int = 32
    num_frames: int = 9
    fps: int = 8
    max_objects: int = 3
    # probability of 1, 2, 3 objects
    object_count_probs: tuple[float, float, float] = (0.7, 0.2, 0.1)
    gradient_prob: float = 0.25
    # probability that a caption mentions the background
    mention_background_prob: float = 0.6
    # (colour, shape, direction) triples no clip shows (a drawn direction that would make one is
    # drawn again); empty by default, so clips are those of the shipped recipe
    held_out: tuple[tuple[str, str, str], ...] = ()


# ------------------------------------------------------------------------------------------------
# Rendering


def _shape_alpha(shape: str, cx: float, cy: float, r: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape centred at (cx, cy) with 'radius' r."""
    dx = xs - cx
    dy = ys - cy
    if shape == "circle":
        sdf = np.sqrt(dx * dx + dy * dy) - r
    elif shape == "square":
        h = r * 0.88
        sdf = np.maximum(np.abs(dx), np.abs(dy)) - h
    elif shape == "triangle":
        # Upward-pointing equilateral triangle inscribed in a circle of radius ~1.15 r.
        R = r * 1.2
        sdf = np.full_like(dx, -np.inf)
        for k in range(3):
            ang = math.pi / 2 + k * 2 * math.pi / 3  # outward normals of the three edges
            nx, ny = math.cos(ang + math.pi / 3), -math.sin(ang + math.pi / 3)
            sdf = np.maximum(sdf, dx * nx + dy * ny - R / 2)
    else:  # pragma: no cover - guarded by callers
        raise ValueError(f"unknown shape {shape!r}")
    return np.clip(0.5 - sdf, 0.0, 1.0)


def render_background(name: str, height: int, width: int) -> np.ndarray:
    """Background image [H, W, 3] in [0, 1]."""
    if name in BACKGROUNDS:
        img = np.empty((height, width, 3), np.float32)
        img[:] = BACKGROUNDS[name]
        return img
    for gname, c0, c1, axis in GRADIENTS:
        if gname == name:
            if axis == "v":
                ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
                ramp = np.broadcast_to(ramp, (height, width, 1))
            else:
                ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
                ramp = np.broadcast_to(ramp, (height, width, 1))
            a = np.asarray(c0, np.float32)
            b = np.asarray(c1, np.float32)
            return (a + (b - a) * ramp).astype(np.float32)
    raise ValueError(f"unknown background {name!r}")


def background_mean_color(name: str) -> np.ndarray:
    if name in BACKGROUNDS:
        return np.asarray(BACKGROUNDS[name], np.float32)
    for gname, c0, c1, _ in GRADIENTS:
        if gname == name:
            return (np.asarray(c0, np.float32) + np.asarray(c1, np.float32)) / 2
    raise ValueError(f"unknown background {name!r}")


def object_position(obj: WorldObject, frame: int, width: int) -> tuple[float, float]:
    dx, dy = DIRECTIONS[obj.direction]
    step = SPEEDS[obj.speed] * width
    return obj.start[0] + dx * step * frame, obj.start[1] + dy * step * frame


def render_clip(
    objects: list[WorldObject], background: str, *, height: int, width: int, num_frames: int
) -> np.ndarray:
    """Render objects over the background: [3, F, H, W] float32 in [-1, 1]."""
    bg = render_background(background, height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs += 0.5
    ys += 0.5
    out = np.empty((num_frames, height, width, 3), np.float32)
    for f in range(num_frames):
        img = bg.copy()
        for obj in objects:
            cx, cy = object_position(obj, f, width)
            a = _shape_alpha(obj.shape, cx, cy, obj.size, xs, ys)[..., None]
            img = img * (1 - a) + np.asarray(COLORS[obj.color], np.float32) * a
        out[f] = img
    return (out.transpose(3, 0, 1, 2) * 2.0 - 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Captions

_DIR_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("to the left", "left", "leftward", "towards the left"),
    "right": ("to the right", "right", "rightward", "towards the right"),
    "up": ("up", "upward", "upwards", "towards the top"),
    "down": ("down", "downward", "downwards", "towards the bottom"),
    "up-left": ("up and to the left", "up-left", "diagonally up and left", "towards the top left"),
    "up-right": ("up and to the right", "up-right", "diagonally up and right", "towards the top right"),
    "down-left": ("down and to the left", "down-left", "diagonally down and left", "towards the bottom left"),
    "down-right": (
        "down and to the right",
        "down-right",
        "diagonally down and right",
        "towards the bottom right",
    ),
}
_VERBS_SINGULAR = ("moves", "slides", "drifts", "travels", "glides", "is moving")
_VERBS_PLURAL = ("move", "slide", "drift", "travel", "glide", "are moving")
_VERBS_ING = ("moving", "sliding", "drifting", "travelling", "gliding")
_SPEED_WORDS = {"slow": ("slowly",), "medium": ("",), "fast": ("quickly", "fast")}


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def direction_phrase(direction: str, rng: np.random.Generator) -> str:
    return _pick(rng, _DIR_PHRASES[direction])


def _bg_phrase(background: str, rng: np.random.Generator) -> str:
    if background in BACKGROUNDS:
        return _pick(rng, (f" on a {background} background", f" over a {background} background"))
    return _pick(rng, (f" on {background}", f" over {background}", f" on {background} background"))


def _noun(count: int, color: str | None, shape: str) -> str:
    plural = shape + "s" if count > 1 else shape
    words = [NUMBER_WORDS[count]]
    if color is not None:
        words.append(color)
    words.append(plural)
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def _clause(
    count: int,
    color: str | None,
    shape: str,
    direction: str,
    speed: str,
    rng: np.random.Generator,
    *,
    ing: bool,
) -> str:
    noun = _noun(count, color, shape)
    dphrase = direction_phrase(direction, rng)
    sp = _pick(rng, _SPEED_WORDS[speed])
    if ing:
        verb = _pick(rng, _VERBS_ING)
    else:
        verb = _pick(rng, _VERBS_SINGULAR if count == 1 else _VERBS_PLURAL)
    parts = [noun, verb, dphrase]
    if sp and rng.random() < 0.5:
        if not ing and rng.random() < 0.3:
            parts.insert(1, sp)  # "a red circle slowly moves left"
        else:
            parts.insert(2, sp)  # "a red circle moves slowly left"
    return " ".join(parts)


def join_clauses(clauses: list[str], rng: np.random.Generator) -> str:
    """ "A and B", "A while B", "A, B and C"."""
    if len(clauses) == 1:
        return clauses[0]
    if len(clauses) == 2:
        return f"{clauses[0]} {_pick(rng, ('and', 'while', 'as'))} {clauses[1]}"
    return ", ".join(clauses[:-1]) + " and " + clauses[-1]


def make_caption(
    groups: list[tuple[int, str | None, str, str, str]],
    background: str,
    rng: np.random.Generator,
    *,
    mention_background: bool,
) -> str:
    """Caption for groups of identical objects: (count, colour or None, shape, direction, speed)."""
    ing = bool(rng.random() < 0.3)
    text = join_clauses([_clause(*g, rng, ing=ing) for g in groups], rng)
    if mention_background:
        text += _bg_phrase(background, rng)
    return text


def simple_caption(color: str, shape: str, direction: str, background: str | None = "black") -> str:
    """The canonical single-object phrasing (used by tests and examples)."""
    article = "an" if color[0] in "aeiou" else "a"
    text = f"{article} {color} {shape} moves {_DIR_PHRASES[direction][0]}"
    if background is not None:
        text += f" on a {background} background" if background in BACKGROUNDS else f" on {background}"
    return text


# ------------------------------------------------------------------------------------------------
# Sampling


def _contrasting_colors(background: str) -> list[str]:
    bg = background_mean_color(background)
    return [c for c in COLOR_NAMES if float(np.linalg.norm(np.asarray(COLORS[c]) - bg)) >= _MIN_CONTRAST]


def _place(
    rng: np.random.Generator, direction: str, speed: str, size: float, cfg: WorldConfig
) -> tuple[float, float]:
    """Start position so that the whole trajectory stays inside the frame."""
    dx, dy = DIRECTIONS[direction]
    travel = SPEEDS[speed] * cfg.width * (cfg.num_frames - 1)
    margin = size + 1.0
    lo_x = margin - min(0.0, dx * travel)
    hi_x = cfg.width - margin - max(0.0, dx * travel)
    lo_y = margin - min(0.0, dy * travel)
    hi_y = cfg.height - margin - max(0.0, dy * travel)
    if hi_x < lo_x:
        lo_x = hi_x = (lo_x + hi_x) / 2
    if hi_y < lo_y:
        lo_y = hi_y = (lo_y + hi_y) / 2
    return float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))


def sample_scene(rng: np.random.Generator, cfg: WorldConfig) -> tuple[list[WorldObject], str, str]:
    """Random objects + background + caption."""
    if rng.random() < cfg.gradient_prob:
        background = GRADIENTS[int(rng.integers(len(GRADIENTS)))][0]
    else:
        names = tuple(BACKGROUNDS)
        # black is the most common background
        p = np.array([0.55] + [0.45 / (len(names) - 1)] * (len(names) - 1))
        background = names[int(rng.choice(len(names), p=p))]
    colors = _contrasting_colors(background)
    n_groups_probs = np.asarray(cfg.object_count_probs[: cfg.max_objects], np.float64)
    total = int(rng.choice(len(n_groups_probs), p=n_groups_probs / n_groups_probs.sum())) + 1

    groups: list[tuple[int, str | None, str, str, str]] = []
    objects: list[WorldObject] = []
    scale = cfg.width / 32.0
    remaining = total
    while remaining > 0:
        # several identical objects ("two red squares drifting upward") or a single one
        count = 1
        if remaining >= 2 and rng.random() < 0.5:
            count = remaining
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        color = colors[int(rng.integers(len(colors)))]
        direction = DIRECTION_NAMES[int(rng.integers(len(DIRECTION_NAMES)))]
        while (color, shape, direction) in cfg.held_out:
            direction = DIRECTION_NAMES[int(rng.integers(len(DIRECTION_NAMES)))]
        speed = tuple(SPEEDS)[int(rng.integers(len(SPEEDS)))]
        size = float(rng.uniform(3.5, 5.5)) * scale if total == 1 else float(rng.uniform(3.0, 4.5)) * scale
        for _ in range(count):
            # avoid overlapping starts (a few tries, then accept)
            for _try in range(20):
                pos = _place(rng, direction, speed, size, cfg)
                if all(
                    math.hypot(pos[0] - o.start[0], pos[1] - o.start[1]) > size + o.size + 1 for o in objects
                ):
                    break
            objects.append(WorldObject(shape, color, direction, speed, size, pos))
        # Colour is occasionally left out of multi-object captions ("two squares drifting upward").
        cap_color: str | None = color
        if count > 1 and rng.random() < 0.3:
            cap_color = None
        groups.append((count, cap_color, shape, direction, speed))
        remaining -= count
    mention = bool(rng.random() < cfg.mention_background_prob)
    caption = make_caption(groups, background, rng, mention_background=mention)
    return objects, background, caption


def make_clip(seed: int, cfg: WorldConfig | None = None) -> Clip:
    """Deterministic (video, caption) pair for a given integer seed."""
    cfg = cfg or WorldConfig()
    rng = np.random.default_rng(np.random.SeedSequence([20260, int(seed)]))
    objects, background, caption = sample_scene(rng, cfg)
    video = render_clip(objects, background, height=cfg.height, width=cfg.width, num_frames=cfg.num_frames)
    return Clip(video=video, caption=caption, objects=objects, background=background)


def make_single_clip(
    color: str,
    shape: str,
    direction: str,
    *,
    background: str = "black",
    speed: str = "medium",
    seed: int = 0,
    cfg: WorldConfig | None = None,
) -> Clip:
    """One object with fixed attributes at a deterministic position (for tests / image mode)."""
    cfg = cfg or WorldConfig()
    rng = np.random.default_rng(np.random.SeedSequence([777, int(seed)]))
    size = float(rng.uniform(3.5, 5.5)) * cfg.width / 32.0
    obj = WorldObject(shape, color, direction, speed, size, _place(rng, direction, speed, size, cfg))
    video = render_clip([obj], background, height=cfg.height, width=cfg.width, num_frames=cfg.num_frames)
    return Clip(
        video=video,
        caption=simple_caption(color, shape, direction, background),
        objects=[obj],
        background=background,
    )


def make_dataset(n: int, cfg: WorldConfig | None = None, *, offset: int = 0) -> tuple[np.ndarray, list[str]]:
    """``n`` clips stacked: videos [n, 3, F, H, W] float32 and captions."""
    cfg = cfg or WorldConfig()
    vids = np.empty((n, 3, cfg.num_frames, cfg.height, cfg.width), np.float32)
    caps: list[str] = []
    for i in range(n):
        c = make_clip(offset + i, cfg)
        vids[i] = c.video
        caps.append(c.caption)
    return vids, caps
