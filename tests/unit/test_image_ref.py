"""`input_reference` as a reference ({image_url} / {file_id}): resolved or refused, never ignored."""

from __future__ import annotations

import asyncio
import base64

import pytest

from app.api.image_ref import resolve_reference
from app.core.config import Settings
from app.core.errors import InvalidInput

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def _resolve(ref: object, settings: Settings | None = None) -> bytes:
    return asyncio.run(resolve_reference(ref, settings or Settings()))


def _field(ref: object, settings: Settings | None = None) -> str:
    with pytest.raises(InvalidInput) as info:
        _resolve(ref, settings)
    assert info.value.status == 400
    return info.value.errors[0].field


def test_data_url_in_object_or_bare() -> None:
    assert _resolve({"image_url": DATA_URL}) == PNG
    assert _resolve(DATA_URL) == PNG


def test_file_id_is_a_clear_400() -> None:
    assert _field({"file_id": "file_abc123"}) == "input_reference.file_id"


def test_http_url_refused_while_fetching_is_off() -> None:
    assert _field({"image_url": "https://example.com/a.png"}) == "input_reference.image_url"


def test_fetch_goes_through_the_ssrf_guard() -> None:
    on = Settings(image_url_fetch=True)  # secure policy: no http, no private hosts
    assert _field({"image_url": "http://example.com/a.png"}, on) == "input_reference.image_url"
    assert _field({"image_url": "https://127.0.0.1/a.png"}, on) == "input_reference.image_url"


@pytest.mark.parametrize(
    "ref",
    [{}, {"image_url": 3}, {"url": DATA_URL}, "ftp://x/y.png", "data:image/png,notbase64", 42],
)
def test_anything_else_is_refused(ref: object) -> None:
    assert _field(ref).startswith("input_reference")
