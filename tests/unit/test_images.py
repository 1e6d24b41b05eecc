"""Upload checks: formats, decompression bombs, corrupt and truncated files."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from app.core.images import ImageInputError, ImageLimits, decode_image


def encode(fmt: str, size: tuple[int, int] = (32, 24), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color=(10, 20, 30) if mode == "RGB" else 1).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_allowed_formats_decode_to_rgb(fmt: str) -> None:
    img = decode_image(encode(fmt))
    assert img.mode == "RGB" and img.size == (32, 24)


def test_rgba_png_converted() -> None:
    assert decode_image(encode("PNG", mode="RGBA")).mode == "RGB"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_refused(fmt: str) -> None:
    with pytest.raises(ImageInputError, match="not allowed") as info:
        decode_image(encode(fmt))
    assert info.value.status == 400
    assert info.value.errors[0].field == "input_reference"


def test_decompression_bomb_refused_before_decoding() -> None:
    bomb = encode("PNG", size=(9000, 9000), mode="1")  # 81 Mpx, a few kB on disk
    assert len(bomb) < 200_000
    with pytest.raises(ImageInputError, match="pixels"):
        decode_image(bomb)
    with pytest.raises(ImageInputError, match="pixels"):
        decode_image(encode("PNG", size=(64, 64)), ImageLimits(max_pixels=1000))
    with pytest.raises(ImageInputError, match="per side"):
        decode_image(encode("PNG", size=(100, 2)), ImageLimits(max_side=50))


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "empty"),
        (b"definitely not an image", "not a recognised image"),
        (encode("PNG")[:60], "corrupt"),
        (encode("JPEG")[:-200], "corrupt"),
    ],
)
def test_corrupt_files_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ImageInputError, match=reason):
        decode_image(data, field="image")


def test_byte_limit() -> None:
    with pytest.raises(ImageInputError, match="larger than"):
        decode_image(encode("PNG"), ImageLimits(max_bytes=10))


def test_corrupted_pixel_data() -> None:
    data = bytearray(encode("PNG", size=(64, 64)))
    idat = data.index(b"IDAT")
    for i in range(idat + 8, idat + 40):
        data[i] ^= 0xFF
    with pytest.raises(ImageInputError):
        decode_image(bytes(data))
