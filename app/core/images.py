"""Decode and check client-uploaded images before they reach a worker.

Checks, in order, each failure an ``ImageInputError`` naming the form field and a reason (→ 400):
size in bytes; the format sniffed from the content (never from the file name or the client's
content type) is one of ``allowed_formats``; the header's pixel count is within ``max_pixels``
*before* any pixel is decoded (decompression bombs); the full decode succeeds (truncated or
corrupt files). Animated images use their first frame. The result is an RGB ``PIL.Image``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Collection
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from app.core.errors import FieldError, InvalidInput

DEFAULT_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "WEBP"})


class ImageInputError(InvalidInput):
    def __init__(self, reason: str, *, field: str = "input_reference") -> None:
        super().__init__(f"{field}: {reason}", errors=[FieldError(field, reason)])
        self.field_name = field
        self.reason = reason


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_side: int = 8192
    allowed_formats: Collection[str] = DEFAULT_FORMATS


def decode_image(
    data: bytes, limits: ImageLimits | None = None, *, field: str = "input_reference"
) -> Image.Image:
    lim = limits or ImageLimits()
    if not data:
        raise ImageInputError("the file is empty", field=field)
    if len(data) > lim.max_bytes:
        raise ImageInputError(f"the file is larger than {lim.max_bytes} bytes", field=field)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageInputError("not a recognised image file", field=field) from exc
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageInputError("the image is corrupt", field=field) from exc
        fmt = (img.format or "").upper()
        if fmt not in lim.allowed_formats:
            allowed = ", ".join(sorted(lim.allowed_formats))
            raise ImageInputError(
                f"image format {fmt or 'unknown'} is not allowed (allowed: {allowed})", field=field
            )
        width, height = img.size
        if width <= 0 or height <= 0:
            raise ImageInputError("the image has no pixels", field=field)
        if width > lim.max_side or height > lim.max_side or width * height > lim.max_pixels:
            raise ImageInputError(
                f"the image is {width}x{height}; at most {lim.max_pixels} pixels and {lim.max_side} per side",
                field=field,
            )
        try:
            img.seek(0)
            img.load()
            rgb = img.convert("RGB")
        except (
            OSError,
            ValueError,
            SyntaxError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as exc:
            raise ImageInputError("the image is corrupt or truncated", field=field) from exc
    return rgb
