"""problem+json in the OpenAPI spec: the `Problem` schema and an example error per HTTP status."""

from __future__ import annotations

from typing import Any

from app.api.errors import openai_type

PROBLEM_MEDIA_TYPE = "application/problem+json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; `errors` names each offending field.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "URI reference naming the problem type"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "message": {
            "type": "string",
            "description": "`title: detail` in one line (what the OpenAI SDK shows in its exception text)",
        },
        "error": {
            "type": "object",
            "description": "OpenAI's error object, beside the problem fields, so OpenAI SDKs raise their "
            "typed exceptions (`BadRequestError`, ...) with `type`, `param` and `code` set",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {
                    "type": "string",
                    "description": "invalid_request_error, authentication_error, permission_error, "
                    "not_found_error, conflict_error, request_too_large, rate_limit_error, server_error",
                },
                "param": {"type": ["string", "null"], "description": "the offending field, if one"},
                "code": {"type": ["string", "null"], "description": "the problem slug, e.g. invalid_request"},
            },
        },
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}


def _problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
    body["errors"] = extra.pop("errors", [])
    body["message"] = f"{title}: {detail}"
    body.update(extra)
    field = body["errors"][0]["field"] if body["errors"] else None
    body["error"] = {
        "message": body["message"],
        "type": openai_type(status),
        "param": field,
        "code": slug.replace("-", "_"),
    }
    return body


PROBLEM_EXAMPLES: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "Invalid field",
        _problem(
            400,
            "invalid-request",
            "Invalid request",
            "size: 640x480 is not supported by wan2.2-ti2v-5b",
            errors=[{"field": "size", "reason": "not supported; use one of 1280x704, 704x1280"}],
        ),
    ),
    401: (
        "Missing or unknown API key",
        _problem(401, "unauthorized", "Unauthorized", "send Authorization: Bearer <key>"),
    ),
    403: ("Bad or expired signature", _problem(403, "forbidden", "Forbidden", "signature expired")),
    404: ("Unknown id", _problem(404, "not-found", "Not found", "no video video_0123456789abcdef")),
    409: (
        "Job already finished",
        _problem(409, "conflict", "Conflict", "video video_0123456789abcdef is already completed"),
    ),
    413: (
        "Upload too large",
        _problem(413, "too-large", "Payload too large", "input_reference exceeds 20 MB"),
    ),
    416: ("Unsatisfiable range", _problem(416, "range", "Range not satisfiable", "bytes=999999999-")),
    429: ("Rate limited", _problem(429, "rate-limited", "Too many requests", "retry after 2 s")),
    502: ("Storage failure", _problem(502, "storage", "Storage error", "upload to the bucket failed")),
    503: (
        "Redis or broker down",
        _problem(503, "unavailable", "Service unavailable", "the job queue is unreachable; retry later"),
    ),
}

_DESCRIPTIONS = {
    400: "Invalid request (a field, the body or a header); `error.param` names the field",
    401: "Missing or invalid API key",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict with the job's state (or its stored record cannot be read: DELETE still removes it)",
    413: "Payload too large",
    416: "Range not satisfiable",
    429: "Rate limited",
    502: "Storage backend error",
    503: "Queue or storage unavailable",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting problem+json errors, each with an example."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        name, example = PROBLEM_EXAMPLES[status]
        out[status] = {
            "description": _DESCRIPTIONS.get(status, name),
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "examples": {name.lower().replace(" ", "_"): {"summary": name, "value": example}},
                }
            },
        }
    return out
