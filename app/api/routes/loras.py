"""`GET /v1/loras`: the LoRAs of `WANSERVE_LORA_DIR` that requests may name (issue 14)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from app.api.deps import SettingsDep
from app.core.loras import LoraList, catalog

router = APIRouter(tags=["loras"])


@router.get("/v1/loras", response_model=LoraList)
async def list_loras(settings: SettingsDep) -> LoraList:
    """Name, base models, recommended defaults, rank and size of each LoRA; broken files carry `error`."""
    return LoraList(data=await asyncio.to_thread(catalog, settings.lora_dir))
