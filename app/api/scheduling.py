"""A create request's scheduling inputs beyond its body: Replicate's ``Cancel-After`` header and the
caller's priority limit (set by authentication; the deployment's default with auth off)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from app.core.cancel_after import parse_cancel_after
from app.core.config import Settings


def merge_cancel_after_header(request: Request, body: dict[str, Any]) -> None:
    """``Cancel-After: 5m`` stands for ``cancel_after`` when the body gives none (the body wins)."""
    header = request.headers.get("cancel-after")
    if header is not None:
        seconds = parse_cancel_after(header, field="Cancel-After")
        if body.get("cancel_after") in (None, ""):
            body["cancel_after"] = seconds


def priority_limit(request: Request, settings: Settings) -> str:
    limit: str = getattr(request.state, "priority_limit", settings.max_priority)
    return limit
