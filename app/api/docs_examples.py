"""Example objects for the OpenAPI spec: video objects in every state, create requests, a model, SSE."""

from __future__ import annotations

from typing import Any

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
    "samplers": ["unipc", "dpm++", "euler", "distill"],
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
