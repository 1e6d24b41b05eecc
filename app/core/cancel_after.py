"""Parsing a request's deadline: ``cancel_after`` seconds, or a duration as Replicate's ``Cancel-After``
header writes it (Go's syntax: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"500ms"``)."""

from __future__ import annotations

import re
from typing import Any

from app.core.errors import InvalidInput

MAX_CANCEL_AFTER_S = 7 * 24 * 3600.0
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def deadline_reason(cancel_after: float | None) -> str:
    return f"deadline: cancel_after {cancel_after:g}s passed"


def parse_cancel_after(value: Any, *, field: str = "cancel_after") -> float | None:
    """Seconds from a number, a numeric string (multipart) or a duration like ``"5m"``; None if unset."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInput.field(field, "expected seconds or a duration like '30s', '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise InvalidInput.field(field, "expected seconds or a duration like '30s', '5m'") from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not 0 < seconds <= MAX_CANCEL_AFTER_S:  # also refuses NaN
        raise InvalidInput.field(field, f"must be above 0 and at most {MAX_CANCEL_AFTER_S:g} seconds")
    return seconds
