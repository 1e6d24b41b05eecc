"""Check a create request's `loras` against the LoRA catalog and apply their recommended defaults.

Rules (each failure is a 400 naming the field, e.g. ``loras[1].name``): at most
`max_loras_per_request` entries, each name once; the name must be in `WANSERVE_LORA_DIR` and its
files readable; the LoRA's sidecar must list the requested base model (no list: any model); the
scale must be finite and within ``[-lora_scale_max, lora_scale_max]``. The first LoRA's sidecar
`defaults` fill in `num_inference_steps`, `guidance_scale`, `sampler` and `shift` where the request
leaves them unset (a distillation LoRA thus runs 4 steps without guidance by default).
"""

from __future__ import annotations

import math

from app.core.config import Settings
from app.core.errors import FieldError, InvalidInput
from app.core.loras import DEFAULT_KEYS, describe
from app.core.schemas import LoraRef, VideoCreate


def apply_lora_request(
    req: VideoCreate, model_id: str, settings: Settings
) -> tuple[VideoCreate, list[LoraRef]]:
    """-> (the request with LoRA defaults filled in, the validated LoRA list)."""
    refs = req.loras or []
    if not refs:
        return req, []
    errors: list[FieldError] = []
    if settings.lora_dir is None:
        raise InvalidInput.field("loras", "this server has no LoRAs (WANSERVE_LORA_DIR is not set)")
    if len(refs) > settings.max_loras_per_request:
        raise InvalidInput.field("loras", f"at most {settings.max_loras_per_request} LoRAs per request")
    defaults: dict[str, object] = {}
    seen: set[str] = set()
    for i, ref in enumerate(refs):
        field = f"loras[{i}]"
        if ref.name in seen:
            errors.append(FieldError(f"{field}.name", f"{ref.name!r} is given twice"))
            continue
        seen.add(ref.name)
        if not math.isfinite(ref.scale) or abs(ref.scale) > settings.lora_scale_max:
            lim = settings.lora_scale_max
            errors.append(FieldError(f"{field}.scale", f"must be a number within [-{lim}, {lim}]"))
        info = describe(settings.lora_dir, ref.name)
        if info is None:
            errors.append(FieldError(f"{field}.name", f"unknown LoRA {ref.name!r}; see GET /v1/loras"))
            continue
        if info.error is not None:
            errors.append(FieldError(f"{field}.name", f"LoRA {ref.name!r} is unusable: {info.error}"))
            continue
        if info.models is not None and model_id not in info.models:
            fits = ", ".join(info.models)
            errors.append(FieldError(f"{field}.name", f"LoRA {ref.name!r} is for {fits}, not {model_id}"))
            continue
        for key, value in info.defaults.items():
            defaults.setdefault(key, value)
    if errors:
        raise InvalidInput("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)
    update = {k: defaults[k] for k in DEFAULT_KEYS if k in defaults and getattr(req, k) is None}
    if "guidance_scale" in update and (
        req.guidance_scale_high_noise is not None or req.guidance_scale_low_noise is not None
    ):
        del update["guidance_scale"]  # the request set guidance per expert
    return req.model_copy(update=update), list(refs)
