"""OpenAPI documentation for every route, kept in one place.

Routes stay short; :func:`apply_docs` (called once by the app factory after the routers are
included) fills in each route's summary, description, documented error responses (as
``application/problem+json`` with examples) and request/response examples, matched by method and
path. A route it does not know is left as it is, and ``tests/unit/test_openapi_spec.py`` fails on
any route that still lacks a summary, an example or its error responses.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

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
    return body


PROBLEM_EXAMPLES: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("Malformed request", _problem(400, "bad-request", "Bad request", "body is not valid JSON")),
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
    422: (
        "Invalid field",
        _problem(
            422,
            "invalid-request",
            "Invalid request",
            "size: 640x480 is not supported by wan2.2-ti2v-5b",
            errors=[{"field": "size", "reason": "not supported; use one of 1280x704, 704x1280"}],
        ),
    ),
    429: ("Rate limited", _problem(429, "rate-limited", "Too many requests", "retry after 2 s")),
    502: ("Storage failure", _problem(502, "storage", "Storage error", "upload to the bucket failed")),
    503: (
        "Redis or broker down",
        _problem(503, "unavailable", "Service unavailable", "the job queue is unreachable; retry later"),
    ),
}

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing or invalid API key",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict with the job's state",
    413: "Payload too large",
    416: "Range not satisfiable",
    422: "Validation error",
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


# ------------------------------------------------------------------ example objects

VIDEO_ID = "video_0123456789abcdef0123456789abcdef"

PARAMETERS_EXAMPLE: dict[str, Any] = {
    "width": 1280,
    "height": 704,
    "num_frames": 121,
    "fps": 24,
    "num_inference_steps": 50,
    "guidance_scale": [5.0],
    "shift": 5.0,
    "sampler": "unipc",
    "seed": 42,
    "negative_prompt": None,
    "has_image": False,
}

VIDEO_QUEUED: dict[str, Any] = {
    "id": VIDEO_ID,
    "object": "video",
    "model": "wan2.2-ti2v-5b",
    "status": "queued",
    "progress": 0,
    "created_at": 1767225600,
    "completed_at": None,
    "expires_at": None,
    "size": "1280x704",
    "seconds": "5.04",
    "prompt": "A corgi running on a beach at sunset",
    "error": None,
    "queue_position": 1,
    "step": 0,
    "total_steps": 0,
    "started_at": None,
    "timings": {},
    "seed": 42,
    "parameters": PARAMETERS_EXAMPLE,
    "urls": None,
    "metadata": {"user": "alice"},
}

VIDEO_IN_PROGRESS: dict[str, Any] = {
    **VIDEO_QUEUED,
    "status": "in_progress",
    "progress": 40,
    "queue_position": None,
    "step": 20,
    "total_steps": 50,
    "started_at": 1767225601,
    "timings": {"queue_wait": 0.8, "text_encode": 1.9},
}

VIDEO_COMPLETED: dict[str, Any] = {
    **VIDEO_IN_PROGRESS,
    "status": "completed",
    "progress": 100,
    "step": 50,
    "completed_at": 1767225960,
    "expires_at": 1767830760,
    "timings": {
        "queue_wait": 0.8,
        "text_encode": 1.9,
        "denoise": 341.2,
        "decode": 12.4,
        "encode": 2.1,
        "upload": 0.6,
    },
    "urls": {
        "video": "https://video.example.com/files/videos/video_0123.../video.mp4?exp=...&sig=...",
        "thumbnail": "https://video.example.com/files/videos/video_0123.../thumbnail.webp?exp=...&sig=...",
        "expires_at": 1767229560,
    },
}

VIDEO_FAILED: dict[str, Any] = {
    **VIDEO_IN_PROGRESS,
    "status": "failed",
    "completed_at": 1767225700,
    "error": {"code": "out_of_memory", "message": "CUDA out of memory while decoding; try a smaller size"},
}

VIDEO_CANCELLED: dict[str, Any] = {**VIDEO_IN_PROGRESS, "status": "cancelled", "cancel_requested": True}

CREATE_JSON_EXAMPLES: dict[str, Any] = {
    "text_to_video": {
        "summary": "Text to video (SDK fields only)",
        "value": {
            "model": "wan2.2-ti2v-5b",
            "prompt": "A corgi running on a beach at sunset",
            "size": "1280x704",
            "seconds": "5",
        },
    },
    "all_options": {
        "summary": "Every wanserve field",
        "value": {
            "model": "wan2.2-t2v-a14b",
            "prompt": "A paper boat drifting down a rainy street",
            "size": "1280x720",
            "num_frames": 81,
            "fps": 16,
            "seed": 7,
            "num_inference_steps": 40,
            "guidance_scale_high_noise": 4.0,
            "guidance_scale_low_noise": 3.0,
            "shift": 12.0,
            "sampler": "unipc",
            "negative_prompt": "blurry, low quality",
            "metadata": {"order": "A-17"},
        },
    },
    "style_and_extension": {
        "summary": "Style controls and prompt extension (see GET /v1/styles)",
        "value": {
            "prompt": "A cat naps on a windowsill",
            "style": {"shot_size": "close_up", "lighting": ["soft", "backlight"], "color_tone": "warm"},
            "prompt_extend": True,
            "prompt_extend_language": "en",
        },
    },
    "image_as_data_url": {
        "summary": "Image to video with the image as a data URL",
        "value": {
            "model": "wan2.2-i2v-a14b",
            "prompt": "The cat turns its head and blinks",
            "input_reference": {"image_url": "data:image/png;base64,iVBORw0KGgo..."},
        },
    },
}

CREATE_MULTIPART_EXAMPLE: dict[str, Any] = {
    "prompt": "The cat turns its head and blinks",
    "model": "wan2.2-ti2v-5b",
    "size": "1280x704",
    "seconds": "5",
    "seed": "42",
    "input_reference": "(binary image file)",
}

_CREATE_FIELDS: dict[str, Any] = {
    "prompt": {"type": "string", "minLength": 1, "maxLength": 4000},
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
    "sampler": {"type": "string", "enum": ["unipc", "dpm++", "euler"]},
    "metadata": {"type": "string", "description": "JSON object, echoed back"},
    "input_reference": {"type": "string", "format": "binary", "description": "the input image"},
    "style": {
        "type": "string",
        "description": "JSON object of style controls (GET /v1/styles); or style[category] fields",
    },
    "prompt_extend": {"type": "boolean", "description": "rewrite the prompt with the worker's LLM first"},
    "prompt_extend_language": {"type": "string", "enum": ["auto", "en", "zh"]},
}

MODEL_EXAMPLE: dict[str, Any] = {
    "id": "wan2.2-ti2v-5b",
    "object": "model",
    "created": 1767225000,
    "owned_by": "wanserve",
    "task": "ti2v",
    "image_input": "optional",
    "sizes": ["1280x704", "704x1280"],
    "default_size": "1280x704",
    "fps": 24,
    "num_frames": {"default": 121, "min": 5, "max": 121},
    "num_inference_steps": {"default": 50, "max": 100},
    "default_shift": 5.0,
    "default_guidance_scale": {"all": 5.0},
    "samplers": ["unipc", "dpm++", "euler"],
    "default_sampler": "unipc",
    "workers": 2,
    "ready_workers": 2,
}

SSE_EXAMPLE = (
    "retry: 1000\n\n"
    "id: 1767225601000-0\nevent: video.started\n"
    'data: {"id": "' + VIDEO_ID + '", "status": "in_progress", "attempts": 1}\n\n'
    "id: 1767225608000-0\nevent: video.progress\n"
    'data: {"id": "' + VIDEO_ID + '", "status": "in_progress", "step": 1, "total_steps": 50, '
    '"progress": 2}\n\n'
    "id: 1767225960000-0\nevent: video.completed\n"
    'data: {"id": "' + VIDEO_ID + '", "status": "completed", "progress": 100}\n\n'
)


FILE_HEADERS: dict[str, Any] = {
    "Content-Length": {"schema": {"type": "integer"}, "example": 1843211},
    "Accept-Ranges": {"schema": {"type": "string"}, "example": "bytes"},
    "Content-Type": {"schema": {"type": "string"}, "example": "video/mp4"},
}


def _json_examples(**examples: tuple[str, Any]) -> dict[str, Any]:
    return {name: {"summary": summary, "value": value} for name, (summary, value) in examples.items()}


def _ok(
    description: str, media_type: str = "application/json", **examples: tuple[str, Any]
) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if examples:
        content[media_type] = {"examples": _json_examples(**examples)}
    return {"description": description, "content": content} if content else {"description": description}


# ------------------------------------------------------------------ per-route documentation


@dataclass(frozen=True)
class RouteDoc:
    summary: str
    description: str
    errors: tuple[int, ...]
    success: dict[int | str, dict[str, Any]] = field(default_factory=dict)
    openapi_extra: dict[str, Any] = field(default_factory=dict)


_AUTH = (401,)

ROUTE_DOCS: dict[tuple[str, str], RouteDoc] = {
    ("POST", "/v1/videos"): RouteDoc(
        "Create a video job",
        "Queue a generation job and answer 202 with the video object at once. Accepts JSON or "
        "`multipart/form-data` (what the OpenAI SDK sends, with `input_reference` as a file and extra "
        "fields flattened into form fields). `seconds` maps to frames with the model's fps "
        "(`num_frames = 4*round(seconds*fps/4)+1`); `num_frames` wins when both are given.",
        (*_AUTH, 400, 409, 413, 422, 429, 503),
        {202: _ok("Queued", queued=("Queued job", VIDEO_QUEUED))},
        {
            "requestBody": {
                "content": {
                    "application/json": {"examples": CREATE_JSON_EXAMPLES},
                    "multipart/form-data": {
                        "schema": {"type": "object", "required": ["prompt"], "properties": _CREATE_FIELDS},
                        "examples": {
                            "image_upload": {
                                "summary": "Image upload (OpenAI SDK style)",
                                "value": CREATE_MULTIPART_EXAMPLE,
                            }
                        },
                    },
                }
            }
        },
    ),
    ("GET", "/v1/videos"): RouteDoc(
        "List video jobs",
        "Cursor pagination: `after` (an id), `limit`, `order` (`desc`, newest first, by default). "
        "`last_id` and `has_more` drive the OpenAI SDK's auto-pagination.",
        (*_AUTH, 422, 503),
        {
            200: _ok(
                "A page of video objects",
                page=(
                    "One page",
                    {
                        "object": "list",
                        "data": [VIDEO_COMPLETED],
                        "first_id": VIDEO_ID,
                        "last_id": VIDEO_ID,
                        "has_more": True,
                    },
                ),
            )
        },
    ),
    ("GET", "/v1/videos/{}"): RouteDoc(
        "Retrieve a video job",
        "The video object. While the job is pending the `openai-poll-after-ms` header suggests when to "
        "poll again; `urls` holds short-lived signed links once it is completed.",
        (*_AUTH, 404, 503),
        {
            200: _ok(
                "The video object",
                queued=("Queued", VIDEO_QUEUED),
                in_progress=("Running", VIDEO_IN_PROGRESS),
                completed=("Completed", VIDEO_COMPLETED),
                failed=("Failed", VIDEO_FAILED),
            )
        },
    ),
    ("DELETE", "/v1/videos/{}"): RouteDoc(
        "Delete a video job",
        "Cancels the job if it is still pending, then removes its record and stored files.",
        (*_AUTH, 404, 503),
        {
            200: _ok(
                "Deleted", deleted=("Deleted", {"id": VIDEO_ID, "object": "video.deleted", "deleted": True})
            )
        },
    ),
    ("POST", "/v1/videos/{}/cancel"): RouteDoc(
        "Cancel a video job",
        "A queued job never runs; a running job stops at its next denoising step. A finished job "
        "answers 409 and is left unchanged.",
        (*_AUTH, 404, 409, 503),
        {200: _ok("The cancelled video object", cancelled=("Cancelled", VIDEO_CANCELLED))},
    ),
    ("GET", "/v1/videos/{}/content"): RouteDoc(
        "Download the video or its thumbnail",
        "`variant=video` (MP4, default) or `thumbnail` (WebP image of the first frame). Streams the "
        "bytes with `Content-Length` and `Range` support, or redirects to a signed URL where the "
        "storage serves files itself.",
        (*_AUTH, 404, 409, 416, 422, 502),
        {
            200: {
                "description": "The file",
                "headers": FILE_HEADERS,
                "content": {
                    "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            206: {"description": "Partial content (Range request)"},
            302: {"description": "Redirect to a signed storage URL"},
        },
    ),
    ("GET", "/v1/videos/{}/events"): RouteDoc(
        "Stream job events (SSE)",
        "Server-Sent Events: every state transition and every denoising step, ending with the terminal "
        "event. Reconnect with `Last-Event-ID` to resume without gaps.",
        (*_AUTH, 404, 503),
        {
            200: {
                "description": "text/event-stream",
                "content": {"text/event-stream": {"schema": {"type": "string"}, "example": SSE_EXAMPLE}},
            }
        },
    ),
    ("GET", "/v1/models"): RouteDoc(
        "List served models",
        "The models that live workers serve, with their sizes, frame and step bounds and defaults.",
        (*_AUTH, 503),
        {200: _ok("The served models", models=("One model", {"object": "list", "data": [MODEL_EXAMPLE]}))},
    ),
    ("GET", "/v1/videos/{}/webhooks"): RouteDoc(
        "List webhook deliveries of a video",
        "Every webhook message sent for this video (Standard Webhooks signed) with each delivery "
        "attempt, oldest first. Only the video's owner sees it.",
        (*_AUTH, 404, 503),
        {
            200: _ok(
                "The delivery log",
                deliveries=(
                    "One delivered event",
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": "msg_2mXQ0f3b6n9p1r4t7v0x3z5b8d",
                                "object": "webhook.delivery",
                                "type": "video.completed",
                                "url": "https://hooks.example.com/wanserve",
                                "status": "delivered",
                                "attempt_count": 1,
                                "created_at": 1767225960.2,
                                "updated_at": 1767225960.5,
                                "next_attempt_at": None,
                                "last_status_code": 204,
                                "last_error": None,
                                "attempts": [{"at": 1767225960.5, "status_code": 204, "duration_ms": 212}],
                            }
                        ],
                    },
                ),
            )
        },
    ),
    ("GET", "/healthz"): RouteDoc(
        "Liveness",
        "Answers 200 while the gateway process is up.",
        (),
        {200: _ok("Up", up=("Up", {"status": "ok"}))},
    ),
    ("GET", "/readyz"): RouteDoc(
        "Readiness",
        "200 when Redis answers and every served model has at least one ready worker; 503 otherwise "
        "(same JSON body, saying what is missing).",
        (),
        {
            200: _ok(
                "Ready",
                ready=(
                    "Ready",
                    {
                        "status": "ready",
                        "redis": True,
                        "models": {"wan2.2-ti2v-5b": {"workers": 2, "ready": 2}},
                    },
                ),
            ),
            503: _ok(
                "Not ready",
                not_ready=(
                    "No worker for a model",
                    {
                        "status": "not_ready",
                        "redis": True,
                        "models": {"wan2.2-ti2v-5b": {"workers": 1, "ready": 0}},
                    },
                ),
                redis_down=(
                    "Redis down",
                    {"status": "unavailable", "redis": False, "models": {}, "error": "ConnectionError"},
                ),
            ),
        },
    ),
    ("GET", "/v1/files/{}"): RouteDoc(
        "Fetch a file by signed URL",
        "Serves a local-storage object behind an HMAC-signed, expiring URL as found in a video's "
        "`urls`. A tampered or expired signature answers 403. Needs no API key.",
        (403, 404),
        {
            200: {
                "description": "The file",
                "headers": FILE_HEADERS,
                "content": {
                    "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                    "image/webp": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    ),
}

_PARAM = re.compile(r"\{[^}]*\}")


def route_key(method: str, path: str) -> tuple[str, str]:
    """(METHOD, path with every `{param}` written as `{}`)."""
    return method.upper(), _PARAM.sub("{}", path)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out.setdefault(key, value)
    return out


def _document_operation(op: dict[str, Any], doc: RouteDoc | None) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    success = {str(k): v for k, v in (doc.success if doc else {}).items()}
    if doc is not None:
        op["summary"] = doc.summary
        if not op.get("description"):
            op["description"] = doc.description
        for status, spec in success.items():
            responses[status] = _merge(responses.get(status, {}), spec)
        if doc.openapi_extra:
            op.update(_merge(op, doc.openapi_extra))
    errors = {int(s) for s in responses if s[:1] in "45" and s not in success}
    errors |= set(doc.errors if doc else ())
    for code, problem in problem_responses(*sorted(e for e in errors if e in PROBLEM_EXAMPLES)).items():
        responses[str(code)] = problem  # problem+json replaces FastAPI's default HTTPValidationError
    if "401" in responses:
        op.setdefault("security", [{"bearerAuth": []}])


def _drop_unreferenced(spec: dict[str, Any], names: tuple[str, ...]) -> None:
    schemas = spec.get("components", {}).get("schemas", {})
    for name in names:
        if name not in schemas:
            continue
        rest = {k: v for k, v in schemas.items() if k not in names}
        text = json.dumps({"paths": spec.get("paths", {}), "schemas": rest})
        if f'"#/components/schemas/{name}"' not in text:
            del schemas[name]


def document_spec(
    spec: dict[str, Any], docs: dict[tuple[str, str], RouteDoc] | None = None
) -> dict[str, Any]:
    """Fill summaries, descriptions, examples and problem+json errors into an OpenAPI dict (in place)."""
    table = ROUTE_DOCS if docs is None else docs
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                _document_operation(op, table.get(route_key(method, path)))
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `wanserve keys create --name NAME` (when WANSERVE_AUTH is on).",
    }
    _drop_unreferenced(spec, ("HTTPValidationError", "ValidationError"))
    return spec


def apply_docs(app: FastAPI, docs: dict[tuple[str, str], RouteDoc] | None = None) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json`` and ``/docs``) carry :data:`ROUTE_DOCS`."""
    original = app.openapi
    if getattr(original, "_wanserve_docs", False):
        return
    done: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        spec = original()  # FastAPI caches it and rebuilds it when the routes change
        if done.get("spec") is not spec:
            document_spec(spec, docs)
            done["spec"] = spec
        return spec

    openapi._wanserve_docs = True  # type: ignore[attr-defined]
    app.openapi = openapi  # type: ignore[method-assign]
