"""`variant=spritesheet` (OpenAI's third content variant): a grid of evenly spaced frames as one WebP.

Made by the worker beside the thumbnail, so the gateway serves it like any other stored asset (no
decoding on request). Tiles keep the video's aspect ratio and are scaled down to at most
``max_tile_side`` pixels; frames are read left to right, top to bottom in time order.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

MAX_TILES = 16
MAX_TILE_SIDE = 256


def pick_frames(num_frames: int, max_tiles: int = MAX_TILES) -> list[int]:
    """Up to ``max_tiles`` frame indices spread evenly from the first to the last frame."""
    n = min(num_frames, max_tiles)
    if n <= 1:
        return [0][:num_frames]
    return [round(i * (num_frames - 1) / (n - 1)) for i in range(n)]


def spritesheet(
    frames: NDArray[np.uint8], *, max_tiles: int = MAX_TILES, max_tile_side: int = MAX_TILE_SIDE
) -> Image.Image:
    """frames: [T, H, W, 3] uint8 → one RGB image of ``ceil(sqrt(n))`` columns of tiles."""
    t, h, w, _ = frames.shape
    picks = pick_frames(t, max_tiles)
    scale = min(1.0, max_tile_side / max(h, w))
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    cols = math.ceil(math.sqrt(len(picks)))
    rows = math.ceil(len(picks) / cols)
    sheet = Image.new("RGB", (cols * tw, rows * th))
    for i, idx in enumerate(picks):
        tile = Image.fromarray(frames[idx])
        if (tw, th) != (w, h):
            tile = tile.resize((tw, th), Image.Resampling.BILINEAR)
        sheet.paste(tile, ((i % cols) * tw, (i // cols) * th))
    return sheet


def write_spritesheet(frames: NDArray[np.uint8], path: Path, *, quality: int = 80) -> None:
    spritesheet(frames).save(path, format="WEBP", quality=quality)
