"""`variant=spritesheet`: evenly spaced frames tiled in time order, scaled tiles, one WebP."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from worker.spritesheet import pick_frames, spritesheet, write_spritesheet


def _frames(t: int, h: int, w: int) -> np.ndarray:
    """Frame i is a flat grey of value 10*i, so each tile says which frame it shows."""
    return np.stack([np.full((h, w, 3), 10 * i, dtype=np.uint8) for i in range(t)])


def test_pick_frames_spans_first_to_last() -> None:
    assert pick_frames(121) == [round(i * 120 / 15) for i in range(16)] and pick_frames(121)[-1] == 120
    assert pick_frames(5) == [0, 1, 2, 3, 4]
    assert pick_frames(1) == [0]


def test_tiles_in_time_order() -> None:
    sheet = np.asarray(spritesheet(_frames(9, 32, 48)))
    assert sheet.shape == (3 * 32, 3 * 48, 3)  # 9 frames → 3x3
    for i in range(9):
        r, c = divmod(i, 3)
        assert sheet[r * 32 + 16, c * 48 + 24, 0] == 10 * i


def test_big_frames_are_scaled_and_written_as_webp(tmp_path: Path) -> None:
    frames = _frames(17, 704, 1280)
    path = tmp_path / "s.webp"
    write_spritesheet(frames, path)
    with Image.open(io.BytesIO(path.read_bytes())) as im:
        assert im.format == "WEBP" and im.size == (4 * 256, 4 * 141)  # 16 tiles, longest side 256
