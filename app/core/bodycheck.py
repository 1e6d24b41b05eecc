"""Limits on the shape of request bodies, checked before anything is validated or stored.

A body nested thousands of levels deep makes the JSON decoder (and anything that walks the value
afterwards) raise `RecursionError`, and a lone UTF-16 surrogate (``"\\ud800"``) decodes fine but
can never be encoded again, so every later answer that renders it fails. Both are refused here as
validation errors. `Metadata` is the OpenAI-style ``metadata`` map: at most 16 pairs of short strings.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator

from app.core.errors import InvalidInput

MAX_DEPTH = 32
METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def check_body(value: Any, *, field: str = "body", max_depth: int = MAX_DEPTH) -> None:
    """Refuse values nested deeper than ``max_depth`` or holding unencodable strings (iterative)."""
    stack: list[tuple[Any, int, str]] = [(value, 0, field)]
    while stack:
        node, depth, where = stack.pop()
        if depth > max_depth:
            raise InvalidInput.field(where, f"nested more than {max_depth} levels deep")
        if isinstance(node, str):
            if not _encodable(node):
                raise InvalidInput.field(where, "contains an invalid unicode character (lone surrogate)")
        elif isinstance(node, dict):
            for k, v in node.items():
                if isinstance(k, str) and not _encodable(k):
                    raise InvalidInput.field(where, "a key contains an invalid unicode character")
                stack.append((v, depth + 1, k if where == "body" else f"{where}.{k}"))
        elif isinstance(node, list):
            stack.extend((v, depth + 1, where) for v in node)


def loads(text: str | bytes, *, field: str = "body") -> Any:
    """`json.loads` that answers a validation error (not a 500) for absurd nesting."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise InvalidInput.field(field, f"nested more than {MAX_DEPTH} levels deep") from None
    check_body(data, field=field)
    return data


def _check_metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > METADATA_MAX_PAIRS:
        raise ValueError(f"at most {METADATA_MAX_PAIRS} key-value pairs")
    for k, v in value.items():
        if not k or len(k) > METADATA_MAX_KEY:
            raise ValueError(f"keys must be 1 to {METADATA_MAX_KEY} characters")
        if len(v) > METADATA_MAX_VALUE:
            raise ValueError(f"values must be at most {METADATA_MAX_VALUE} characters")
        if not (_encodable(k) and _encodable(v)):
            raise ValueError("contains an invalid unicode character (lone surrogate)")
    return value


# a flat map of short strings, like OpenAI's (a nested or non-string value is a validation error)
Metadata = Annotated[dict[str, str], AfterValidator(_check_metadata)]
