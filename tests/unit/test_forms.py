"""Create and source bodies read from multipart: the OpenAI SDK's flattened field names."""

from __future__ import annotations

import pytest

from app.api.forms import _put
from app.core.errors import InvalidInput


def test_form_flattening() -> None:
    out: dict = {}
    for k, v in [
        ("prompt", "p"),
        ("metadata[a]", "1"),
        ("metadata[b]", "2"),
        ("events[]", "x"),
        ("events[]", "y"),
    ]:
        _put(out, k, v)
    assert out == {"prompt": "p", "metadata": {"a": "1", "b": "2"}, "events": ["x", "y"]}
    with pytest.raises(InvalidInput):
        _put({"a": "1"}, "a[b]", "2")
