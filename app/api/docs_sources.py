"""Documentation of the source-video routes: extensions, edits and remixes."""

from __future__ import annotations

from typing import Any

from app.api.docs_examples import VIDEO_ID, VIDEO_QUEUED
from app.api.docs_routes import RouteDoc, _ok

_AUTH = (401,)
_EXTENDED = {
    **VIDEO_QUEUED,
    "seconds": "10.125",
    "operation": "extend",
    "source_video_id": VIDEO_ID,
}
_EDITED = {**VIDEO_QUEUED, "operation": "edit", "source_video_id": VIDEO_ID}
_REMIXED = {
    **VIDEO_QUEUED,
    "operation": "remix",
    "source_video_id": VIDEO_ID,
    "remixed_from_video_id": VIDEO_ID,
}


def _request(json_examples: dict[str, Any], form_example: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        k: {"summary": k.replace("_", " "), "value": v} for k, v in json_examples.items()
                    }
                },
                "multipart/form-data": {
                    "examples": {"sdk": {"summary": "OpenAI SDK style", "value": form_example}}
                },
            }
        }
    }


SOURCE_DOCS: dict[tuple[str, str], RouteDoc] = {
    ("POST", "/v1/videos/extensions"): RouteDoc(
        "Extend a video",
        "A new video: the source's frames unchanged, followed by `seconds` more, generated as segments "
        "each conditioned (through the model's image mode) on the end of the one before. The source is "
        "an uploaded file (`video`, checked: container, codec, duration, pixel count), `video[id]` in "
        'multipart, or JSON `{"video": {"id": ...}}` naming a completed video of the caller (its '
        "model is used). Models without an image mode (T2V) answer 400.",
        (*_AUTH, 404, 409, 413, 400, 429, 503),
        {202: _ok("Queued", queued=("Queued extension", _EXTENDED))},
        _request(
            {"reference": {"prompt": "the fox keeps running", "seconds": "4", "video": {"id": VIDEO_ID}}},
            {"prompt": "the fox keeps running", "seconds": "4", "video[id]": VIDEO_ID},
        ),
    ),
    ("POST", "/v1/videos/edits"): RouteDoc(
        "Edit a video",
        "Video-to-video: the source is encoded, noised to `strength` (default 0.6; 1 = from pure noise) "
        "and denoised with the new prompt in `round(num_inference_steps * strength)` steps. A source "
        "longer than one clip has its first clip edited. Same source forms as extensions.",
        (*_AUTH, 404, 409, 413, 400, 429, 503),
        {202: _ok("Queued", queued=("Queued edit", _EDITED))},
        _request(
            {"reference": {"prompt": "the fox, in snow", "strength": 0.5, "video": {"id": VIDEO_ID}}},
            {"prompt": "the fox, in snow", "strength": "0.5", "video[id]": VIDEO_ID},
        ),
    ),
    ("POST", "/v1/videos/{}/remix"): RouteDoc(
        "Remix a video",
        "A new video with the source's resolved parameters (model, size, duration, seed, steps, "
        "guidance) and a new prompt; `remixed_from_video_id` names the source, which must be completed.",
        (*_AUTH, 404, 409, 400, 429, 503),
        {202: _ok("Queued", queued=("Queued remix", _REMIXED))},
        {
            "requestBody": {
                "content": {
                    "application/json": {
                        "examples": {
                            "prompt": {"summary": "New prompt", "value": {"prompt": "the fox at night"}}
                        }
                    }
                }
            }
        },
    ),
}
