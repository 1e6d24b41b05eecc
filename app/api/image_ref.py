"""``input_reference`` given as a reference, not a file: ``{image_url}`` or ``{file_id}`` (OpenAI's shapes).

``image_url`` may be a base64 ``data:`` URL, or (when ``WANSERVE_IMAGE_URL_FETCH`` is on) an http(s)
URL fetched once through the SSRF guard with the image size cap and a time cap. ``file_id`` names an
OpenAI Files object, which this service has no store for: a clear 400 rather than a silently
text-only job. Anything else is a 400 too; a reference is never ignored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii

import httpx

from app.core.config import Settings
from app.core.errors import InvalidInput
from app.core.ssrf import EgressPolicy, SSRFError, safe_request

FIELD = "input_reference"
MAX_IMAGE_BYTES = 20 * 1024 * 1024


def decode_data_url(url: str) -> bytes:
    if not url.startswith("data:") or ";base64," not in url:
        raise InvalidInput.field(FIELD, "a data: URL must be base64 encoded (data:image/png;base64,...)")
    try:
        return base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput.field(FIELD, "invalid base64 image data") from None


def image_url_policy(settings: Settings) -> EgressPolicy:
    return EgressPolicy(
        allow_http=settings.image_url_allow_insecure,
        allow_private=settings.image_url_allow_insecure,
        timeout_s=settings.image_url_timeout_s,
        max_response_bytes=MAX_IMAGE_BYTES + 1,
    )


def fetch_image(url: str, settings: Settings) -> bytes:
    """GET ``url`` through the SSRF guard (pinned address, no redirects, capped size and time)."""
    field = f"{FIELD}.image_url"
    try:
        resp = safe_request("GET", url, image_url_policy(settings))
    except SSRFError as exc:
        raise InvalidInput.field(field, exc.reason) from None
    except httpx.HTTPError as exc:
        raise InvalidInput.field(field, f"could not fetch the image ({type(exc).__name__})") from None
    if resp.status_code != 200:
        raise InvalidInput.field(field, f"fetching the image answered HTTP {resp.status_code}")
    if resp.truncated:
        raise InvalidInput.field(field, f"the image is larger than {MAX_IMAGE_BYTES} bytes")
    return resp.body


async def resolve_reference(ref: object, settings: Settings | None) -> bytes:
    """The image bytes an ``input_reference`` value names; 400 naming the field for anything else."""
    if isinstance(ref, dict):
        if ref.get("file_id") not in (None, ""):
            raise InvalidInput.field(
                f"{FIELD}.file_id",
                "file ids are not supported here; send the image as a file upload or as image_url",
            )
        extra = sorted(set(ref) - {"image_url", "file_id"})
        if extra:
            raise InvalidInput.field(f"{FIELD}.{extra[0]}", "unknown field; use image_url or file_id")
        url = ref.get("image_url")
    else:
        url = ref
    if not isinstance(url, str) or not url:
        raise InvalidInput.field(FIELD, "expected a file, {image_url: URL} or {file_id: id}")
    if url.startswith("data:"):
        return decode_data_url(url)
    if url.startswith(("http://", "https://")):
        if settings is None or not settings.image_url_fetch:
            raise InvalidInput.field(
                f"{FIELD}.image_url",
                "http(s) image URLs are not fetched by this server (WANSERVE_IMAGE_URL_FETCH is off); "
                "send a data: URL or upload the file",
            )
        return await asyncio.to_thread(fetch_image, url, settings)
    raise InvalidInput.field(f"{FIELD}.image_url", "expected a data: URL or an http(s) URL")
