"""Read the create body from JSON or multipart/form-data into one dict plus optional image bytes.

The OpenAI SDK sends `videos.create` as multipart even without a file and flattens extra fields:
``metadata[key]=v`` becomes a nested object, ``webhook_events[]=a`` a list. JSON may carry the
image as ``input_reference: {"image_url": ...}`` (or the bare URL); `app.api.image_ref` resolves it.
"""

from __future__ import annotations

import io
import re
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from app.api.image_ref import resolve_reference
from app.core import bodycheck
from app.core.config import Settings
from app.core.errors import InvalidInput

_BRACKETS = re.compile(r"\[([^\]]*)\]")
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096


def _put(out: dict[str, Any], name: str, value: Any) -> None:
    base = name.split("[", 1)[0]
    parts = [base, *_BRACKETS.findall(name[len(base) :])]
    node = out
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt = None if last else parts[i + 1]
        if last:
            if part == "":
                raise InvalidInput.field(name, "malformed field name")
            if isinstance(node.get(part), dict | list):  # `metadata[a]=1&metadata=2`: ambiguous
                raise InvalidInput.field(name, "conflicting field names")
            node[part] = value
        elif nxt == "":
            items = node.setdefault(part, [])
            if not isinstance(items, list):  # `prompt=x&prompt[]=y`, `metadata[a]=1&metadata[]=2`
                raise InvalidInput.field(name, "conflicting field names")
            items.append(value)
            return
        else:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InvalidInput.field(name, "conflicting field names")
            node = child


async def read_create_body(
    request: Request, settings: Settings | None = None
) -> tuple[dict[str, Any], bytes | None]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    image: bytes | None = None
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form()
        body: dict[str, Any] = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != "input_reference":
                    raise InvalidInput.field(name, "only input_reference may be a file")
                image = await value.read(MAX_IMAGE_BYTES + 1)
            else:
                _put(body, name, value)
        ref = body.pop("input_reference", None)  # the SDK flattens {image_url} to input_reference[image_url]
        if ref is not None:
            if image is not None:
                raise InvalidInput.field("input_reference", "give a file or a reference, not both")
            image = await resolve_reference(ref, settings)
        return body, image
    try:
        data = bodycheck.loads(await request.body())
    except ValueError:
        raise InvalidInput.field("body", "expected a JSON object or multipart/form-data") from None
    if not isinstance(data, dict):
        raise InvalidInput.field("body", "expected a JSON object")
    ref = data.pop("input_reference", None)
    if ref is not None:
        image = await resolve_reference(ref, settings)
    return data, image


def normalise_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> bytes:
    """Decode and re-encode as RGB PNG (rejects non-images, oversized and bomb-like inputs)."""
    from app.core.images import ImageLimits, decode_image  # format, pixel-count and corruption checks

    rgb = decode_image(data, ImageLimits(max_bytes=MAX_IMAGE_BYTES, max_pixels=max_pixels))
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    return buf.getvalue()
