"""The documentation of each route (`ROUTE_DOCS`), keyed by (METHOD, path with `{}` params)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.api.docs_examples import (
    CREATE_JSON_EXAMPLES,
    CREATE_MULTIPART_EXAMPLE,
    FILE_HEADERS,
    MODEL_EXAMPLE,
    SSE_EXAMPLE,
    VIDEO_CANCELLED,
    VIDEO_COMPLETED,
    VIDEO_FAILED,
    VIDEO_ID,
    VIDEO_IN_PROGRESS,
    VIDEO_QUEUED,
)


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
        "(`num_frames = 4*round(seconds*fps/4)+1`); a duration the model cannot make is a 400 naming "
        "`seconds` (never clamped). Give `seconds` or `num_frames`, not both.",
        (*_AUTH, 400, 409, 413, 429, 503),
        {202: _ok("Queued", queued=("Queued job", VIDEO_QUEUED))},
        {
            "requestBody": {
                "content": {
                    "application/json": {"examples": CREATE_JSON_EXAMPLES},
                    "multipart/form-data": {
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
        (*_AUTH, 400, 503),
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
        "poll again; `urls` holds short-lived signed links once it is completed. A stored record that "
        "cannot be read answers 409 `unreadable_record` (delete it with `DELETE`).",
        (*_AUTH, 404, 409, 503),
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
        "Cancels the job if it is still pending, then removes its record and stored files (also a "
        "record that cannot be read any more).",
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
        "`variant=video` (MP4, default), `thumbnail` (WebP image of the first frame) or `spritesheet` "
        "(WebP grid of up to 16 evenly spaced frames, read left to right, top to bottom). Streams the "
        "bytes with `Content-Length` and `Range` support, or redirects to a signed URL where the "
        "storage serves files itself.",
        (*_AUTH, 400, 404, 409, 416, 502),
        {
            200: {
                "description": "The file",
                "headers": FILE_HEADERS,
                "content": {
                    "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                    "image/webp": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            206: {"description": "Partial content (Range request)"},
            302: {"description": "Redirect to a signed storage URL"},
        },
    ),
    ("GET", "/v1/videos/{}/events"): RouteDoc(
        "Stream job events (SSE)",
        "Server-Sent Events: every state transition and every denoising step, ending with the terminal "
        "event. Reconnect with `Last-Event-ID` to resume without gaps. Open streams are capped per API "
        "key (`WANSERVE_MAX_STREAMS_PER_KEY`, across gateways) and per gateway "
        "(`WANSERVE_MAX_STREAMS_TOTAL`): beyond either the answer is 429 with `Retry-After`. "
        "While the job denoises, "
        "`video.preview` events carry a small live preview: `{id, step, total_steps, progress, frames, "
        "width, height, image}` with `image` a `data:image/webp;base64,...` URL of `frames` frames side "
        "by side (a reader joining late gets only the newest preview of the backlog).",
        (*_AUTH, 404, 429, 503),
        {
            200: {
                "description": "text/event-stream",
                "content": {"text/event-stream": {"schema": {"type": "string"}, "example": SSE_EXAMPLE}},
            }
        },
    ),
    ("GET", "/v1/models"): RouteDoc(
        "List served models",
        "The models that live workers serve, with their sizes, frame and step bounds and defaults. "
        "Public: needs no API key.",
        (503,),
        {200: _ok("The served models", models=("One model", {"object": "list", "data": [MODEL_EXAMPLE]}))},
    ),
    ("GET", "/v1/loras"): RouteDoc(
        "List LoRAs",
        "The LoRAs of the server's LoRA folder that a create request may name in `loras`, with the "
        "base models they fit, their recommended defaults (e.g. 4 distill steps), rank and size. "
        "Public, like `/v1/models`: needs no API key.",
        (),
        {
            200: _ok(
                "The LoRAs",
                loras=(
                    "A 4-step distillation LoRA",
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": "lightning-4step",
                                "object": "lora",
                                "models": ["wan2.2-t2v-a14b"],
                                "defaults": {
                                    "num_inference_steps": 4,
                                    "guidance_scale": 1.0,
                                    "sampler": "distill",
                                    "shift": 5.0,
                                },
                                "rank": 64,
                                "experts": ["high_noise", "low_noise"],
                                "size_bytes": 1226833920,
                                "description": None,
                                "error": None,
                            }
                        ],
                    },
                ),
            )
        },
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
    ("GET", "/v1/videos/{}/preview"): RouteDoc(
        "The latest live preview",
        "The newest `video.preview` image of the job as WebP: a few frames of the predicted video side by "
        "side, earliest first, with the step in `X-Preview-Step` / `X-Preview-Total-Steps`. 404 until the "
        "first preview (or when previews are off). Only the job's owner sees it.",
        (*_AUTH, 404, 503),
        {
            200: {
                "description": "The preview image",
                "headers": {
                    "X-Preview-Step": {"schema": {"type": "integer"}, "example": 12},
                    "X-Preview-Total-Steps": {"schema": {"type": "integer"}, "example": 50},
                },
                "content": {"image/webp": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    ),
    ("GET", "/v1/videos/{}/logs"): RouteDoc(
        "The job's log lines",
        "Oldest first: each stage and denoising step of the job (from its event stream), warnings such as "
        "a requeue or a prompt-extension fallback, stage timings once it is finished, and the reason of a "
        "failure as the last line. Only the job's owner sees it.",
        (*_AUTH, 404, 503),
        {
            200: _ok(
                "The log",
                failed=(
                    "A failed job",
                    {
                        "object": "list",
                        "video_id": VIDEO_ID,
                        "data": [
                            {
                                "at": 1767225600.0,
                                "level": "info",
                                "event": "video.queued",
                                "message": "queued",
                            },
                            {
                                "at": 1767225601.0,
                                "level": "info",
                                "event": "video.started",
                                "message": "started (attempt 1)",
                            },
                            {
                                "at": 1767225608.0,
                                "level": "error",
                                "event": "video.failed",
                                "message": "failed: worker_error: CUDA out of memory",
                            },
                        ],
                    },
                ),
            )
        },
    ),
    ("GET", "/v1/queue"): RouteDoc(
        "The queue per model",
        "For every served model: how many jobs run and wait (all keys), and the caller's own running "
        "and waiting jobs with their `queue_position` (1 = next to start). Other keys' jobs are only "
        "counted.",
        (*_AUTH, 503),
        {
            200: _ok(
                "The queue",
                queue=(
                    "Two of mine waiting",
                    {
                        "object": "list",
                        "data": [
                            {
                                "model": "wan2.2-ti2v-5b",
                                "running": 2,
                                "waiting": 5,
                                "workers": 2,
                                "jobs": [
                                    {"id": VIDEO_ID, "status": "queued", "queue_position": 2},
                                    {"id": "video_fedcba9876543210", "status": "queued", "queue_position": 5},
                                ],
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

from app.api.docs_sources import SOURCE_DOCS  # noqa: E402  (it imports RouteDoc from here)

ROUTE_DOCS.update(SOURCE_DOCS)
