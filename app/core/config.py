"""Deployment settings: one typed object, read once at start (env prefix ``WANSERVE_``) and passed down.

Nothing else in wanserve reads ``os.environ``. Every field is documented in README.md ("Settings").
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SIGNING_KEY = "dev-insecure-signing-key-change-me"


class Settings(BaseSettings):
    """All wanserve settings. ``Settings()`` reads the environment (and ``.env``) once."""

    model_config = SettingsConfigDict(env_prefix="WANSERVE_", env_file=".env", extra="ignore", frozen=True)

    # --- deployment -------------------------------------------------------------------------
    env: Literal["dev", "prod"] = "dev"
    log_level: str = "INFO"

    # --- redis (job store, events, worker registry) and broker ------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None  # defaults to redis_url
    redis_timeout_s: float = Field(2.0, gt=0)  # connect/read timeout; Redis down -> 503 after this
    enqueue_timeout_s: float = Field(3.0, gt=0)  # broker publish budget before answering 503
    # gateway: Redis connections shared by requests; a burst past it waits up to redis_timeout_s
    redis_max_connections: int = Field(100, ge=2)

    # --- gateway -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str | None = None  # base of signed URLs; default: the request's own base URL
    poll_after_ms: int = Field(1000, ge=0)  # `openai-poll-after-ms` hint while a job is pending
    sse_keepalive_s: float = Field(15.0, gt=0)
    max_streams_per_key: int = Field(20, ge=0)  # open /events streams per API key, all gateways; 0 = off
    max_streams_total: int = Field(500, ge=0)  # open /events streams per gateway process; 0 = off
    max_list_limit: int = Field(100, ge=1)

    # --- storage -----------------------------------------------------------------------------
    data_dir: Path = Path("data")
    storage_url: str | None = None  # local folder path / file:// URL; default <data_dir>/objects
    signing_key: SecretStr = SecretStr(DEV_SIGNING_KEY)  # HMAC key of local signed URLs
    url_ttl_s: int = Field(3600, ge=1, le=604800)  # lifetime of a minted signed URL
    retention_s: int = Field(7 * 86400, ge=1)  # finished jobs and assets kept this long

    # --- worker ------------------------------------------------------------------------------
    model: str = "wanserve-demo"  # the worker's model id; also the gateway's default `model`
    model_path: str | None = None  # weights folder; default: load the preset by name
    device: str = "cpu"
    dtype: str | None = None  # e.g. "bfloat16"; default: the pipeline's choice for the device
    offload: bool = False
    torch_threads: int | None = Field(None, ge=1)
    worker_id: str | None = None  # default: <hostname>-<pid>
    warmup: bool = True  # warm-up generations (worker/warmup.py) before reporting ready
    # torch.compile each DiT block (regional, one graph for all blocks); the warm-up then runs one
    # step per served (size, default frames, text/image mode) bucket so no job pays the compile
    compile: bool = False
    # FP8 (e4m3, per-row scales) for the DiT blocks' linear layers (model/fp8.py); needs a CUDA GPU of
    # compute capability >= 8.9, elsewhere the worker refuses to start and says why
    fp8: bool = False
    # a worker group (`wanserve worker --devices`): one job on several processes, one per device
    # (`worker/group.py`); empty = one process on `device`. ulysses x (2 if cfg_parallel) = devices
    devices: str = ""  # comma-separated, e.g. "cuda:0,cuda:1" or "cpu,cpu"
    ulysses: int = Field(1, ge=1)  # sequence-parallel group size (the DiT's head count must divide by it)
    cfg_parallel: bool = False  # the conditional and unconditional forwards on two rank groups
    expert_devices: str = ""  # two-expert models, one process: "cuda:0,cuda:1" keeps each expert resident
    heartbeat_interval_s: float = Field(2.0, gt=0)
    worker_ttl_s: float = Field(10.0, gt=0)  # a worker silent this long is considered gone
    model_grace_s: float = Field(900.0, ge=0)  # keep queueing a model's jobs this long after its last worker
    model_load_timeout_s: float = Field(900.0, gt=0)
    job_time_limit_s: int = Field(3600, ge=10)  # hard limit; a soft limit fires 30 s (or 10%) earlier
    visibility_timeout_s: int = Field(6 * 3600, ge=60)  # must exceed the longest queue wait + run
    max_attempts: int = Field(3, ge=1)  # deliveries of one job before it fails as `worker_lost`
    debug_step_delay_s: float = Field(0.0, ge=0)  # testing aid: sleep after each denoising step
    # live previews (README "Live previews"): a small WebP of the predicted video every so often
    previews: bool = True
    preview_every_s: float = Field(1.0, ge=0)  # at most one preview per this many seconds...
    preview_every_steps: int = Field(1, ge=1)  # ...and per this many denoising steps
    preview_max_side: int = Field(128, ge=16, le=512)  # longest side of each preview frame, pixels
    preview_frames: int = Field(4, ge=1, le=16)  # frames side by side in the strip
    preview_max_bytes: int = Field(48_000, ge=4_096, le=256_000)  # the image's data URL, at most
    # --- reliability (README "Reliability and observability settings") ---------------
    job_lease_ttl_s: float = Field(30.0, gt=0)  # a running job's worker silent this long is presumed dead
    reaper_interval_s: float = Field(5.0, gt=0)  # gateway: how often expired leases are reaped
    # gateway: a queued job with no broker message this long (gateway died before publishing, worker
    # child died before starting it) is re-published, and failed after max_attempts
    queued_recover_s: float = Field(300.0, gt=0)
    shutdown_grace_s: float = Field(60.0, ge=0)  # SIGTERM: the job may finish this long, else requeued
    retention_sweep_interval_s: float = Field(60.0, gt=0)  # gateway: how often expired assets are deleted
    log_format: Literal["json", "text"] = "json"  # json: one object per line with request_id / job_id
    debug_oom_marker: str | None = None  # testing aid: prompts containing it raise a simulated OOM at step 2

    # --- security, S3, webhooks, limits (README "Security and delivery settings") ----
    auth: bool | None = None  # Bearer API keys; default: on when env=prod, off (loud warning) in dev
    s3_endpoint_url: str | None = None  # non-AWS S3 endpoint (MinIO, R2, moto) for storage_url=s3://
    s3_region: str | None = None  # default: the boto3 chain (AWS_DEFAULT_REGION, config files)
    s3_path_style: bool | None = None  # default: path-style when s3_endpoint_url is set
    s3_multipart_threshold: int = Field(16 * 1024 * 1024, ge=5 * 1024 * 1024)
    s3_upload_attempts: int = Field(3, ge=1, le=10)
    webhook_secret: SecretStr | None = None  # "whsec_…" (several, comma separated, for rotation)
    webhook_allow_http: bool = False  # development and tests only
    webhook_allow_private: bool = False  # development and tests only
    webhook_timeout_s: float = Field(15.0, gt=0, le=60)
    webhook_max_attempts: int = Field(10, ge=1, le=50)
    webhook_max_total_s: float = Field(24 * 3600.0, gt=0)
    webhook_backoff_base_s: float = Field(5.0, ge=0)
    webhook_backoff_factor: float = Field(4.0, ge=1)
    webhook_backoff_max_s: float = Field(4 * 3600.0, gt=0)
    webhook_progress_interval_s: float = Field(1.0, ge=0)
    rate_limit_requests: int = Field(300, ge=0)  # per API key per window; 0 = off
    rate_limit_window_s: int = Field(60, ge=1)
    max_active_jobs: int = Field(16, ge=0)  # queued + running per API key; 0 = off
    # highest `priority` a request may ask for (keys created with --max-priority override it; admin
    # keys may use any); above it → 403
    max_priority: Literal["high", "normal", "low"] = "normal"
    max_queued_jobs: int = Field(1000, ge=0)  # active jobs across all keys; 0 = off
    idempotency_ttl_s: int = Field(24 * 3600, ge=60)
    cors_origins: str = ""  # comma-separated allowed origins for browser frontends elsewhere
    max_body_bytes: int = Field(25 * 1024 * 1024, ge=1024)  # larger request bodies → 413
    max_image_pixels: int = Field(4096 * 4096, ge=1)
    # --- long videos and video sources (README "Long videos, extend, edit, remix") -------------
    max_video_seconds: float = Field(60.0, gt=0)  # longest video a request may ask for (segments chained)
    # input_reference {"image_url": "https://..."}: fetched through the SSRF guard (off: such URLs → 400)
    image_url_fetch: bool = False
    image_url_timeout_s: float = Field(10.0, gt=0, le=60)
    image_url_allow_insecure: bool = False  # http:// and private/loopback hosts; development and tests only

    # --- prompt extension (docs/styles.md) -------------------------------------------
    prompt_extend_model_path: str | None = None  # local chat-model folder; unset: extension unavailable
    prompt_extend_device: str = "cpu"  # where the LLM runs (in the model worker, before text encoding)
    prompt_extend_dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    prompt_extend_timeout_s: float = Field(60.0, gt=0)  # per rewrite; past it the original prompt is used
    prompt_extend_max_new_tokens: int = Field(400, ge=16, le=4096)
    prompt_extend_max_words: int = Field(200, ge=20, le=1000)  # text-only bound; half of it with an image
    prompt_extend_sample: bool = False  # greedy by default; sampling is seeded with the job's seed
    prompt_extend_queue: bool = False  # gateway: extend on the `prompt_extend` queue (worker.extend_worker)

    # --- LoRAs and few-step generation (app/core/loras.py) ---------------------------------------
    lora_dir: Path | None = None  # NAME.safetensors / NAME/ (+ NAME.json); read by gateway and worker
    max_loras_per_request: int = Field(4, ge=1, le=16)
    lora_scale_max: float = Field(4.0, gt=0)  # a request's scale must lie in [-max, max]
    lora_cache_bytes: int = Field(4 * 1024**3, ge=0)  # worker: LoRA tensors kept in RAM (LRU by bytes)
    lora_fuse: bool = False  # worker: merge a job's LoRAs into the weights instead of the low-rank branch

    # --- output frame rate (app/core/output.py, worker/postprocess.py) ----------------------------
    # worker: a RIFE v4.6 `flownet.pkl` (or .safetensors of the same keys); set, `fps` above the model's
    # rate is interpolated by it (parameters.interpolation "rife"), unset: FFmpeg's minterpolate
    interpolator_weights: Path | None = None

    @property
    def auth_enabled(self) -> bool:
        return self.env == "prod" if self.auth is None else self.auth

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        # the placeholder is public: with auth on, anyone could forge another tenant's signed URLs
        placeholder = self.signing_key.get_secret_value() == DEV_SIGNING_KEY
        if placeholder and (self.env != "dev" or self.auth_enabled):
            raise ValueError(
                "WANSERVE_SIGNING_KEY must be set to a real secret when auth is on or WANSERVE_ENV != dev"
            )
        return self

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def public_base_url(self) -> str:
        """Where clients reach the gateway: the base of links in webhook payloads."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def soft_time_limit_s(self) -> int:
        return max(1, self.job_time_limit_s - min(30, self.job_time_limit_s // 10))

    @property
    def storage_root(self) -> Path:
        """The local storage folder (only meaningful for the local backend)."""
        url = self.storage_url
        if url is None:
            return self.data_dir / "objects"
        return Path(url.removeprefix("file://"))

    def resolved_worker_id(self) -> str:
        return self.worker_id or f"{socket.gethostname()}-{os.getpid()}"
