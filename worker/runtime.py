"""The resident model of one worker process: loaded once, warmed up, announced with heartbeats.

`init_runtime(settings)` runs once per process that executes jobs (the prefork child, or the
main process with the solo pool). It loads the pipeline, publishes the model's `ModelPreset` (as
JSON) and a heartbeat to Redis (`app.core.registry`), runs the warm-up (`worker.warmup`), then
reports ``ready``. A daemon thread refreshes the heartbeat every ``heartbeat_interval_s``; the
state is ``loading`` → ``ready`` ⇄ ``busy`` (with ``current_job``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from celery import current_app

from app.core import registry
from app.core.background import Loop, every
from app.core.config import Settings
from app.core.effects import build_job_store
from app.core.jobstore import JobStore
from app.core.redisconn import sync_client
from app.core.storage import Storage, make_storage
from worker.group_rank import group_member
from worker.observe import memory_stats
from worker.warmup import warm_up

log = logging.getLogger(__name__)


class WorkerRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = settings.resolved_worker_id()
        self.redis = sync_client(settings)
        self.storage: Storage = make_storage(settings)
        # the Celery app of this process publishes the webhooks of its transitions
        self.store: JobStore = build_job_store(
            settings, self.redis, storage=self.storage, send_task=current_app.send_task
        )
        self.pipe: Any = None
        self.preset: Any = None
        self.state = "starting"
        self.current_job: str | None = None
        self.extender: Any = None  # worker.prompt_extend.PromptExtender when one is configured
        self.loras: Any = None  # worker.loras.LoraCache
        self.lora_problems: dict[str, str] = {}  # LoRA name -> why it cannot be used
        self.interpolator: Any = None  # model.interpolator.RifeInterpolator when weights are configured
        self._state_lock = threading.Lock()
        self._beating: Loop | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def load(self) -> None:
        s = self.settings
        t0 = time.perf_counter()
        self.pipe = load_worker_pipeline(s)
        self.preset = self.pipe.preset
        from worker.loras import LoraCache, check_lora_dir

        self.loras = LoraCache(s.lora_dir, s.lora_cache_bytes)
        self.lora_problems = check_lora_dir(self.loras, self.pipe)
        if s.interpolator_weights is not None:  # a bad file stops the worker here, not in a job
            from model.interpolator import load_interpolator

            self.interpolator = load_interpolator(s.interpolator_weights, device=s.device)
        log.info("loaded %s on %s in %.1fs", self.preset.model_id, s.device, time.perf_counter() - t0)
        if s.prompt_extend_model_path:  # imported only when used (pulls in transformers)
            from worker.prompt_extend import load_extender

            self.extender = load_extender(s)
        self.state = "loading"
        self.heartbeat()
        self._beating = every(s.heartbeat_interval_s, self._beat, name="wanserve-heartbeat")
        member = group_member()
        if member is not None:  # rank 0 of a worker group: every generate runs on all ranks
            from worker.group_rank import settle_group_loss

            self.pipe = member.lead(self.pipe, lambda: settle_group_loss(self))
        if s.warmup:
            self.warmup()
        self.state = "ready"
        self.heartbeat()
        if member is not None:
            member.mark_ready()

    def warmup(self) -> None:
        """Run the warm-up (`worker.warmup`) so the first real job pays no first-call costs."""
        took = warm_up(self.pipe, self.settings)
        log.info("warm-up took %.2fs", took)

    @property
    def interpolation(self) -> str:
        """How this worker raises the frame rate (`ResolvedParams.interpolation`)."""
        return "minterpolate" if self.interpolator is None else "rife"

    def cache_types(self) -> dict[str, float]:
        """Step-cache type -> default threshold the loaded model can run (published with the preset)."""
        if self.pipe is None or self.preset is None:
            return {}
        from model.cache import supported_types

        return supported_types(self.preset.model_id, self.pipe.cache_calibration)

    def close(self) -> None:
        if self._beating is not None:
            self._beating.stop()
        try:
            registry.remove_worker(self.redis, self.worker_id)
        except Exception:
            log.warning("could not deregister worker %s", self.worker_id)

    # -- heartbeat --------------------------------------------------------------------------------
    def heartbeat(self) -> None:
        if self.preset is None:
            return
        registry.publish_heartbeat(
            self.redis,
            worker_id=self.worker_id,
            preset_json=json.dumps(
                {
                    **self.preset.to_dict(),
                    "cache_types": self.cache_types(),
                    "interpolation": self.interpolation,
                }
            ),
            model_id=self.preset.model_id,
            state=self.state,
            device=self.settings.devices or self.settings.device,
            current_job=self.current_job,
            ttl_s=self.settings.worker_ttl_s,
            extra={
                "prompt_extend": "1" if self.extender is not None else "0",
                "pid": str(os.getpid()),
                **group_extra(),
                **memory_stats(self.settings.device),  # for the admin view
            },
        )

    def probe_device(self) -> bool:
        """A tiny op on the accelerator (a Python ping proves nothing about a wedged GPU)."""
        if not self.settings.device.startswith("cuda"):
            return True
        try:
            import torch

            return float(torch.ones(1, device=self.settings.device).add_(1).item()) == 2.0
        except Exception as exc:
            log.error("device probe failed: %r", exc)
            return False

    def _beat(self) -> None:
        if self.state in ("ready", "unhealthy"):  # not while a job runs
            ok = self.probe_device()
            with self._state_lock:
                if self.state in ("ready", "unhealthy"):
                    self.state = "ready" if ok else "unhealthy"
        self.heartbeat()

    def set_busy(self, job_id: str | None) -> None:
        with self._state_lock:
            self.current_job = job_id
            self.state = "busy" if job_id else "ready"
        try:
            self.heartbeat()
        except Exception as exc:
            log.warning("heartbeat failed: %r", exc)

    def free_device_memory(self, collect: bool = True) -> None:
        from worker.memory import free_device_memory  # gc + torch.cuda.empty_cache

        free_device_memory(self.settings.device, collect=collect)


def group_extra() -> dict[str, str]:
    """The worker group's shape for the registry (`/v1/admin/workers`, `/v1/models`), if any."""
    member = group_member()
    if member is None:
        return {}
    return {"group": json.dumps({**member.shape.describe(), "pids": member.link.pids()})}


def load_worker_pipeline(settings: Settings) -> Any:
    """The worker's pipeline, ready to serve; the same on every rank of a worker group."""
    import torch

    from model import load_pipeline

    s = settings
    if s.torch_threads:
        torch.set_num_threads(s.torch_threads)
    dtype = getattr(torch, s.dtype) if s.dtype else None
    experts = [d.strip() for d in s.expert_devices.split(",")] if s.expert_devices else None
    if experts is not None and len(experts) != 2:
        raise ValueError(
            f"WANSERVE_EXPERT_DEVICES takes two devices like cuda:0,cuda:1, got {s.expert_devices!r}"
        )
    device = "cpu" if experts else s.device  # placed expert by expert below
    pipe = load_pipeline(s.model_path or s.model, device=device, dtype=dtype, offload=s.offload)
    if experts is not None:
        pipe.place_experts(*experts)
    member = group_member()
    if member is not None:
        member.enable(pipe)  # Ulysses / CFG parallel in the DiTs, before compile
    prepare_pipeline(pipe, s)
    return pipe


def prepare_pipeline(pipe: Any, settings: Settings) -> None:
    """Per-worker options on a loaded pipeline: LoRA fusing, FP8 DiT layers, regional compile.

    FP8 where it cannot run (CPU, a GPU older than Ada) raises `model.fp8.Fp8Unavailable` with the
    reason, so the worker refuses to start rather than serve something else than configured.
    """
    pipe.lora_fuse = settings.lora_fuse
    if settings.fp8:
        from model.fp8 import quantize_transformer_fp8

        for dit in pipe.experts:
            quantize_transformer_fp8(dit)
    if settings.compile:
        pipe.compile_blocks()


_runtime: WorkerRuntime | None = None


def init_runtime(settings: Settings) -> WorkerRuntime:
    """Create and load this process's runtime (idempotent)."""
    global _runtime
    if _runtime is None:
        rt = WorkerRuntime(settings)
        rt.load()
        _runtime = rt
    return _runtime


def get_runtime() -> WorkerRuntime:
    if _runtime is None:
        raise RuntimeError("worker runtime not initialised")
    return _runtime


def shutdown_runtime() -> None:
    global _runtime
    if _runtime is not None:
        _runtime.close()
        _runtime = None
