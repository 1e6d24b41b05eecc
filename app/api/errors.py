"""Exception → `application/problem+json`, registered once; routes never catch errors themselves.

Body: ``{type, title, status, detail, errors: [{field, reason}], message, error}`` where ``error`` is
OpenAI's ``{message, type, param, code}`` (so OpenAI SDKs raise ``BadRequestError`` etc. with ``param``
and ``code`` set). Redis or broker outages map to 503 with ``Retry-After``; anything unexpected is a 500
whose detail hides internals. Answers a retry cannot change carry ``x-should-retry: false``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

from app.core.errors import FieldError, QueueUnavailable, ServiceError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"

# OpenAI's `error.type` per status (what openai-python exposes as `e.type`)
OPENAI_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    416: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return OPENAI_TYPES.get(status, "invalid_request_error")


def _should_retry(status: int, retryable: bool | None) -> bool:
    if retryable is not None:
        return retryable
    return status >= 500 or status in (408, 429)


def problem(
    status: int,
    title: str,
    detail: str,
    slug: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    retryable: bool | None = None,
) -> JSONResponse:
    message = f"{title}: {detail}" if detail and detail != title else title
    first = errors[0] if errors else None
    body: dict[str, Any] = {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [{"field": e.field, "reason": e.reason} for e in errors or []],
        # extension member: the OpenAI SDK puts a body's `message` into its exception text
        "message": message,
        "error": {
            "message": message,
            "type": openai_type(status),
            "param": first.field if first is not None and first.field != "body" else None,
            "code": slug.replace("-", "_"),
        },
    }
    headers = dict(headers or {})
    if not _should_retry(status, retryable):
        headers["x-should-retry"] = "false"
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field_errors(errs: list[Any]) -> list[FieldError]:
    out = []
    for e in errs:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")]
        out.append(FieldError(".".join(loc) or "body", str(e.get("msg", "invalid"))))
    return out


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = {"Retry-After": "1"} if isinstance(exc, QueueUnavailable) else {}
    headers.update(getattr(exc, "headers", None) or {})  # 401 WWW-Authenticate, 429 Retry-After + RateLimit
    return problem(exc.status, exc.title, exc.detail, exc.type_slug, exc.errors, headers, exc.retryable)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError | ValidationError)
    errors = _field_errors(list(exc.errors()))
    detail = "; ".join(f"{e.field}: {e.reason}" for e in errors)
    return problem(400, "Invalid request", detail, "invalid-request", errors)


async def _redis_error(_: Request, exc: Exception) -> JSONResponse:
    log.warning("redis unavailable: %r", exc)
    return problem(
        503,
        "Service unavailable",
        "the job store is unavailable; retry later",
        "unavailable",
        headers={"Retry-After": "1"},
    )


def _allowed_methods(request: Request) -> str | None:
    """Every documented method at this path (Starlette's 405 names only the first route's methods)."""
    path = request.url.path
    for template, ops in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template)), path):
            return ", ".join(sorted(m.upper() for m in ops if m in _METHODS))
    return None


_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return problem(exc.status_code, str(exc.detail), str(exc.detail), "http", headers=headers)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal error", "an internal error occurred", "internal")


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    """The answer the registered handlers give for ``exc`` (for `app.api.hot_routes`, which serves
    its routes in front of FastAPI's exception layers); anything unexpected is the logged 500."""
    if isinstance(exc, ServiceError):
        return await _service_error(request, exc)
    if isinstance(exc, RequestValidationError | ValidationError):
        return await _validation_error(request, exc)
    if isinstance(exc, RedisError):
        return await _redis_error(request, exc)
    if isinstance(exc, HTTPException):
        return await _http_error(request, exc)
    return await _unexpected(request, exc)


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValidationError, _validation_error)
    app.add_exception_handler(RedisError, _redis_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
