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
from app.core.schemas import VideoCreate

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


async def _read_form_or_json(
    request: Request, file_field: str, max_file_bytes: int
) -> tuple[dict[str, Any], bytes | None]:
    """-> (fields, the bytes of the one file field or None); multipart names are un-flattened."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form()
        body: dict[str, Any] = {}
        upload: bytes | None = None
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != file_field:
                    raise InvalidInput.field(name, f"only {file_field} may be a file")
                upload = await value.read(max_file_bytes + 1)
            else:
                _put(body, name, value)
        return body, upload
    try:
        data = bodycheck.loads(await request.body())
    except ValueError:
        raise InvalidInput.field("body", "expected a JSON object or multipart/form-data") from None
    if not isinstance(data, dict):
        raise InvalidInput.field("body", "expected a JSON object")
    return data, None


async def read_create_body(
    request: Request, settings: Settings | None = None
) -> tuple[dict[str, Any], bytes | None]:
    """``POST /v1/videos``: -> (fields, image bytes or None), the image uploaded or referenced."""
    body, image = await _read_form_or_json(request, "input_reference", MAX_IMAGE_BYTES)
    ref = body.pop("input_reference", None)  # the SDK flattens {image_url} to input_reference[image_url]
    if ref is not None:
        if image is not None:
            raise InvalidInput.field("input_reference", "give a file or a reference, not both")
        image = await resolve_reference(ref, settings)
    return body, image


async def read_source_body(request: Request, max_bytes: int) -> tuple[dict[str, Any], bytes | None]:
    """Extensions, edits, remixes: -> (fields, uploaded source video bytes or None)."""
    return await _read_form_or_json(request, "video", max_bytes)


def normalise_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> bytes:
    """Decode and re-encode as RGB PNG (rejects non-images, oversized and bomb-like inputs)."""
    from app.core.images import ImageLimits, decode_image  # format, pixel-count and corruption checks

    rgb = decode_image(data, ImageLimits(max_bytes=MAX_IMAGE_BYTES, max_pixels=max_pixels))
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- the bodies' OpenAPI schemas
# The routes read their bodies themselves (JSON or multipart), so FastAPI cannot infer these; each
# route passes its own as ``openapi_extra`` and `app.api.docs` adds only examples.

CREATE_FORM_FIELDS: dict[str, Any] = {
    "prompt": {"type": "string", "minLength": 1, "maxLength": 4000},
    "input_reference": {"type": "string", "format": "binary", "description": "the input image"},
    "model": {"type": "string", "description": "a model id served by a live worker (GET /v1/models)"},
    "size": {"type": "string", "description": "WIDTHxHEIGHT, one of the model's sizes"},
    "seconds": {"type": "string", "description": "duration; frames = 4*round(seconds*fps/4)+1"},
    "num_frames": {"type": "integer", "description": "4n+1 within the model's bounds"},
    "fps": {"type": "integer"},
    "negative_prompt": {"type": "string"},
    "seed": {"type": "integer"},
    "num_inference_steps": {"type": "integer"},
    "guidance_scale": {"type": "number", "description": "both experts"},
    "guidance_scale_high_noise": {"type": "number", "description": "A14B: the high-noise expert"},
    "guidance_scale_low_noise": {"type": "number", "description": "A14B: the low-noise expert"},
    "shift": {"type": "number"},
    "sampler": {"type": "string", "enum": ["unipc", "dpm++", "euler", "distill"]},
    "metadata": {"type": "string", "description": "JSON object, echoed back"},
    "style": {
        "type": "string",
        "description": "JSON object of style controls (GET /v1/styles); or style[category] fields",
    },
    "prompt_extend": {"type": "boolean", "description": "rewrite the prompt with the worker's LLM first"},
    "prompt_extend_language": {"type": "string", "enum": ["auto", "en", "zh"]},
}


def _request_body(json_schema: dict[str, Any], form_schema: dict[str, Any] | None) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": json_schema}}
    if form_schema is not None:
        content["multipart/form-data"] = {"schema": form_schema}
    return {"requestBody": {"required": True, "content": content}}


def _object(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": True}


def _source_body(extra: dict[str, Any], required: list[str]) -> dict[str, Any]:
    props = {"prompt": {"type": "string"}, **extra}
    ref = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
    upload = {"video": {"type": "string", "format": "binary"}, "video[id]": {"type": "string"}}
    return _request_body(
        _object({**props, "video": ref}, [*required, "video"]), _object({**props, **upload}, required)
    )


CREATE_BODY = _request_body(VideoCreate.model_json_schema(), _object(CREATE_FORM_FIELDS, ["prompt"]))
EXTENSION_BODY = _source_body(
    {"seconds": {"type": "string", "description": "length of the extension (added to the source)"}},
    ["prompt", "seconds"],
)
EDIT_BODY = _source_body(
    {"strength": {"type": "number", "description": "how far the source is noised, (0, 1]; default 0.6"}},
    ["prompt"],
)
REMIX_BODY = _request_body(
    {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}, None
)
