"""Pydantic shapes shared by the gateway and the worker: requests, job records, public objects.

The public video object is OpenAI's `/v1/videos` object plus wanserve's fields; see README.md.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app.core.bodycheck import Metadata
from app.core.cancel_after import MAX_CANCEL_AFTER_S, parse_cancel_after
from app.core.priority import Priority
from app.core.status import JobStatus
from app.core.styles import PromptExtensionInfo, StyleSelection

Sampler = Literal["unipc", "dpm++", "euler", "distill"]


class ModelInfo(BaseModel):
    """Mirror of `model.ModelPreset` as workers publish it (JSON) in Redis; app never imports model."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_id: str
    task: str
    image_input: Literal["none", "required", "optional"]
    sizes: list[tuple[int, int]]
    default_size: tuple[int, int]
    default_num_frames: int
    min_num_frames: int
    max_num_frames: int
    fps: int
    default_num_steps: int
    max_num_steps: int
    default_shift: float
    default_guidance_scale: list[float]  # [g] one expert; [low_noise, high_noise] two experts
    boundary: float | None = None
    default_sampler: str = "unipc"
    samplers: list[str] = ["unipc", "dpm++", "euler", "distill"]
    negative_prompt: str = ""
    vae_stride: tuple[int, int, int] = (4, 8, 8)  # (t, h, w): frame counts are vae_stride[0]*n + 1
    patch_size: tuple[int, int, int] = (1, 2, 2)
    # step-cache types this worker's model can run -> calibrated default threshold
    cache_types: dict[str, float] = {}
    example_prompts: list[str] = []
    # how this worker raises the frame rate above `fps` (published with the preset)
    interpolation: Literal["minterpolate", "rife"] = "minterpolate"

    @property
    def num_experts(self) -> int:
        return 2 if self.boundary is not None else 1


class LoraRef(BaseModel):
    """One LoRA of a request: a name from `GET /v1/loras` and its strength."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    scale: float = Field(1.0, description="strength; alpha/rank of the file is applied on top")


def _cancel_after_field(value: Any) -> float | None:
    return parse_cancel_after(value)


def _loras_field(value: Any) -> Any:
    """Multipart sends `loras` as a JSON string or flattened as `loras[0][name]` (an index dict)."""
    if isinstance(value, str):
        import json

        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    if isinstance(value, dict) and value and all(str(k).isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    return value


class CacheRequest(BaseModel):
    """Step caching: skip the transformer on denoising steps that change little (README "Step caching")."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="first_block | teacache | magcache | easycache")
    threshold: float | None = Field(None, description="in (0, 2]; default: the model's calibrated value")

    @model_validator(mode="before")
    @classmethod
    def _from_json_text(cls, value: Any) -> Any:
        """Multipart may carry the object as JSON text (or as cache[type]=..., cache[threshold]=...)."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return {"type": value}  # a bare type name
        return value


class VideoCreate(BaseModel):
    """`POST /v1/videos` body (JSON, or multipart/form-data flattened the OpenAI-SDK way)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=4000)
    model: str | None = None
    size: str | None = Field(None, description="WIDTHxHEIGHT, one of the model's sizes")
    seconds: float | str | None = Field(
        None, description="duration; frames = 4*round(seconds*fps/4)+1; outside the model's range → 400"
    )
    num_frames: int | None = Field(None, description="4n+1 within the model's bounds")
    fps: int | None = Field(None, ge=1, le=60)
    negative_prompt: str | None = Field(None, max_length=4000)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    num_inference_steps: int | None = Field(None, ge=1)
    guidance_scale: float | None = Field(None, ge=0, le=50, description="both experts")
    guidance_scale_high_noise: float | None = Field(None, ge=0, le=50, description="high-noise expert")
    guidance_scale_low_noise: float | None = Field(None, ge=0, le=50, description="low-noise expert")
    shift: float | None = Field(None, gt=0, le=100)
    sampler: Sampler | None = None
    metadata: Metadata | None = Field(None, description="up to 16 string pairs (keys <= 64, values <= 512)")
    input_reference: Any = Field(None, description="image: multipart file, or JSON {image_url: data URL}")
    webhook_url: str | None = Field(None, max_length=2048, description="https URL for signed events")
    webhook_events: list[str] | str | None = Field(
        None, description="subset of started, progress, completed, failed, cancelled (default: terminal)"
    )
    style: StyleSelection | None = Field(None, description="cinematic style controls; see GET /v1/styles")
    prompt_extend: bool = Field(False, description="rewrite the prompt with the worker's local LLM first")
    cache: CacheRequest | None = Field(None, description="step caching {type, threshold}; default: off")
    prompt_extend_language: Literal["auto", "en", "zh"] = Field(
        "auto", description="language of the rewritten prompt; auto: the prompt's own"
    )
    loras: Annotated[list[LoraRef] | None, BeforeValidator(_loras_field)] = Field(
        None, description="LoRAs by name (GET /v1/loras), applied for this job only"
    )
    upscale_refine: float | None = Field(
        None, gt=0, le=1, description="upscaled sizes: strength of a model refine pass at the target size"
    )
    priority: Priority = Field(
        "normal", description="served in the order high, normal, low within the model's queue (per-key limit)"
    )
    cancel_after: Annotated[float | None, BeforeValidator(_cancel_after_field)] = Field(
        None,
        gt=0,
        le=MAX_CANCEL_AFTER_S,
        description="seconds (or a duration like '5m'): past it the job is cancelled, queued or running",
    )


class ResolvedParams(BaseModel):
    """The exact generation parameters after defaults and validation (what the worker runs)."""

    width: int
    height: int
    num_frames: int
    fps: int
    num_inference_steps: int
    guidance_scale: list[float]  # model order: [g] or [low_noise, high_noise]
    shift: float
    sampler: str
    seed: int
    negative_prompt: str | None = None  # None: the model's default negative prompt
    has_image: bool = False
    # long videos: > 1 when num_frames exceeds the model's native length
    segments: int = Field(1, description="segments generated, each conditioned on the previous one")
    source_frames: int | None = Field(None, description="extensions: frames of the source video, kept as is")
    strength: float | None = Field(None, description="edits: how far the source is noised (1 = fully)")
    loras: list[LoraRef] = []
    # output post-processing: `fps` above the model's rate, `size` above its native sizes
    output_fps: int | None = Field(None, description="frame rate of the MP4 when above `fps` (interpolated)")
    interpolation: Literal["minterpolate", "rife"] | None = Field(
        None,
        description="how frames were interpolated: FFmpeg's motion-compensated `minterpolate`, "
        "or `rife` (a learned RIFE v4.6 interpolator the worker has weights for)",
    )
    output_width: int | None = Field(None, description="width of the MP4 when upscaled")
    output_height: int | None = Field(None, description="height of the MP4 when upscaled")
    upscaler: Literal["lanczos"] | None = Field(None, description="how frames were upscaled")
    refine_strength: float | None = Field(None, description="strength of the refine pass after upscaling")
    cache: dict[str, Any] | None = None  # resolved {"type", "threshold"}; None: every step computed


class JobErrorInfo(BaseModel):
    code: str
    message: str


class JobRecord(BaseModel):
    """The job record, stored field by field (each value JSON) in the Redis hash `wanserve:job:<id>`."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: JobStatus
    model: str
    prompt: str
    params: ResolvedParams
    metadata: dict[str, Any] | None = None
    created_at: float
    started_at: float | None = None
    completed_at: float | None = None
    expires_at: float | None = None
    progress: int = 0
    step: int = 0
    total_steps: int = 0
    error: JobErrorInfo | None = None
    attempts: int = 0
    worker_id: str | None = None
    attempt_token: str | None = None  # fence: the running attempt's token; stale attempts are refused
    timings: dict[str, float] = {}
    assets: dict[str, str] = {}  # variant -> storage key
    input_key: str | None = None  # storage key of the input image
    cancel_requested: bool = False
    # owner and webhook fields (auth, webhooks); the job store stores and returns them as given
    owner: str | None = None  # API key id; None when auth is off
    webhook_url: str | None = None
    webhook_events: list[str] | None = None
    idempotency_key: str | None = None
    style: dict[str, list[str]] | None = None  # StyleSelection.as_dict()
    revised_prompt: str | None = None  # what the model is given (style woven in, maybe extended)
    prompt_extend: bool = False
    prompt_extension: PromptExtensionInfo | None = None  # set when prompt_extend was requested
    request_id: str | None = None  # X-Request-ID of the submission; in worker logs, to follow a request
    # video sources: extensions, edits and remixes
    operation: Literal["extend", "edit", "remix"] | None = None
    source_video_id: str | None = None  # the referenced source video (None for an uploaded file)
    source_key: str | None = None  # storage key of the source MP4 (extend / edit)
    remixed_from_video_id: str | None = None
    # scheduling: priority in the model's queue, the request's deadline
    priority: Priority = "normal"
    cancel_after: float | None = None
    deadline_at: float | None = None  # unix seconds: created_at + cancel_after
    cancel_reason: str | None = None  # why it was cancelled when not by the client (a deadline)


class VideoUrls(BaseModel):
    video: str | None = None
    thumbnail: str | None = None
    expires_at: int


class VideoPublic(BaseModel):
    """The video object: OpenAI's fields first, then wanserve's."""

    id: str
    object: Literal["video"] = "video"
    model: str
    status: JobStatus
    progress: int
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    size: str
    seconds: str = Field(description='real duration frames/fps, a short decimal string ("5.06", "4")')
    prompt: str
    error: JobErrorInfo | None = None
    remixed_from_video_id: str | None = None
    # wanserve extensions
    queue_position: int | None = None
    step: int = 0
    total_steps: int = 0
    started_at: int | None = None
    timings: dict[str, float] = {}
    seed: int
    parameters: ResolvedParams
    urls: VideoUrls | None = None
    metadata: dict[str, Any] | None = None
    attempts: int = 0
    worker_id: str | None = None
    cancel_requested: bool = False
    revised_prompt: str | None = None
    style: dict[str, list[str]] | None = None
    prompt_extension: PromptExtensionInfo | None = None
    operation: Literal["extend", "edit", "remix"] | None = None  # how it was made from a source video
    source_video_id: str | None = None
    priority: Priority = "normal"
    cancel_after: float | None = Field(None, description="the request's deadline in seconds after creation")
    deadline_at: int | None = Field(None, description="unix seconds past which the job is cancelled")
    cancel_reason: str | None = Field(None, description="why it was cancelled, when a deadline did it")


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VideoPublic]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class WorkerShape(BaseModel):
    """How the live workers of a model split one job: over ``world_size`` processes (devices),
    ``ulysses`` sequence-parallel ranks x (2 with ``cfg_parallel``); 1/1/false is one device."""

    world_size: int
    ulysses: int
    cfg_parallel: bool
    workers: int  # live workers of this shape


class ModelPublic(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "wanserve"
    task: str
    image_input: str
    sizes: list[str]
    upscale_sizes: list[str] = []  # also accepted as `size`: generated at a native size, then upscaled
    default_size: str
    fps: int
    # how an `fps` above `fps` is reached: FFmpeg's minterpolate, or the workers' learned RIFE
    interpolation: Literal["minterpolate", "rife"] = "minterpolate"
    num_frames: dict[str, int]  # default / min / max
    num_inference_steps: dict[str, int]  # default / max
    default_shift: float
    default_guidance_scale: dict[str, float]  # {"all"} or {"high_noise", "low_noise"}
    samplers: list[str]
    default_sampler: str
    workers: int
    ready_workers: int
    prompt_extend_available: bool = False  # a live worker of this model has an extension LLM
    cache_types: dict[str, float] = {}  # step-cache type -> default threshold (see the `cache` field)
    example_prompts: list[str] = []  # prompts the served model renders well (the web page offers them)
    worker_shapes: list[WorkerShape] = []  # worker groups (`wanserve worker --devices`) and single devices


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelPublic]
