"""What requests may name: `GET /v1/models` (what live workers serve, with constraints and defaults,
from Redis) and `GET /v1/loras` (the LoRAs of `WANSERVE_LORA_DIR`)."""

from __future__ import annotations

import asyncio
from collections import Counter

from fastapi import APIRouter

from app.api.deps import RedisDep, SettingsDep
from app.core.extenders import live_extenders
from app.core.loras import LoraList, catalog
from app.core.output import upscale_sizes
from app.core.params import size_str
from app.core.registry import WorkerInfo, served_models
from app.core.schemas import ModelInfo, ModelList, ModelPublic, WorkerShape

router = APIRouter()


def _public(info: ModelInfo, workers: list[WorkerInfo]) -> ModelPublic:
    g = info.default_guidance_scale
    guidance = {"all": g[0]} if info.num_experts == 1 else {"low_noise": g[0], "high_noise": g[-1]}
    return ModelPublic(
        id=info.model_id,
        created=int(min(w.heartbeat for w in workers)),
        task=info.task,
        image_input=info.image_input,
        example_prompts=info.example_prompts,
        sizes=[size_str(w, h) for w, h in info.sizes],
        upscale_sizes=upscale_sizes([(int(w), int(h)) for w, h in info.sizes]),
        default_size=size_str(*info.default_size),
        fps=info.fps,
        interpolation=info.interpolation,
        num_frames={
            "default": info.default_num_frames,
            "min": info.min_num_frames,
            "max": info.max_num_frames,
        },
        num_inference_steps={"default": info.default_num_steps, "max": info.max_num_steps},
        default_shift=info.default_shift,
        default_guidance_scale=guidance,
        samplers=info.samplers,
        default_sampler=info.default_sampler,
        workers=len(workers),
        ready_workers=sum(w.state in ("ready", "busy") for w in workers),
        prompt_extend_available=any(w.prompt_extend for w in workers),
        cache_types=info.cache_types,
        worker_shapes=_shapes(workers),
    )


def _shapes(workers: list[WorkerInfo]) -> list[WorkerShape]:
    counts = Counter(w.shape() for w in workers)
    shapes = sorted(counts.items())
    return [WorkerShape(world_size=n, ulysses=u, cfg_parallel=c, workers=k) for (n, u, c), k in shapes]


@router.get("/v1/models", response_model=ModelList, tags=["models"])
async def list_models(redis: RedisDep, settings: SettingsDep) -> ModelList:
    models = await served_models(redis, settings.worker_ttl_s)
    data = [_public(info, ws) for _, (info, ws) in sorted(models.items())]
    if settings.prompt_extend_queue:  # extension runs on its own workers (app.core.extenders)
        available = bool(await live_extenders(redis, settings.worker_ttl_s))
        data = [m.model_copy(update={"prompt_extend_available": available}) for m in data]
    return ModelList(data=data)


@router.get("/v1/loras", response_model=LoraList, tags=["loras"])
async def list_loras(settings: SettingsDep) -> LoraList:
    """Name, base models, recommended defaults, rank and size of each LoRA; broken files carry `error`."""
    return LoraList(data=await asyncio.to_thread(catalog, settings.lora_dir))
