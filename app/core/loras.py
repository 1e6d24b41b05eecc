"""The LoRA catalog of `WANSERVE_LORA_DIR`, read without torch (the gateway never imports it).

Layout: ``NAME.safetensors`` (applied to every expert) or a folder ``NAME/`` holding
``high_noise_model.safetensors`` and/or ``low_noise_model.safetensors`` (Wan2.2-Lightning). An
optional sidecar ``NAME.json`` (next to the file or folder, or inside the folder) says which base
models the LoRA fits (``models``; absent: any) and recommended ``defaults`` that a request which
does not set them inherits (``num_inference_steps``, ``guidance_scale``, ``sampler``, ``shift``).

A safetensors file starts with an 8-byte little-endian header length and a JSON header mapping each
tensor name to its dtype, shape and offsets; that is all the gateway needs (rank, size, keys).
Clients only ever name a LoRA; paths never come from a request.

The demo model ships its own LoRAs (its 4-step distillation LoRA) in ``DEMO_LORA_DIR``, the
repository's (or installed package's) ``model/demo/loras``, located here by path so that the
gateway needs no import of ``model``; `wanserve serve` of the demo model lists them by default.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

EXPERT_FILES = ("high_noise_model.safetensors", "low_noise_model.safetensors")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_HEADER_BYTES = 100 * 1024 * 1024
DEFAULT_KEYS = ("num_inference_steps", "guidance_scale", "sampler", "shift")
DEMO_MODEL = "wanserve-demo"
DEMO_LORA_DIR = Path(__file__).resolve().parents[2] / "model" / "demo" / "loras"


class LoraDefaults(BaseModel):
    """Recommended generation settings (e.g. a 4-step distillation LoRA)."""

    model_config = {"extra": "forbid"}

    num_inference_steps: int | None = Field(None, ge=1)
    guidance_scale: float | None = Field(None, ge=0, le=50)
    sampler: str | None = None
    shift: float | None = Field(None, gt=0, le=100)


class LoraSidecar(BaseModel):
    model_config = {"extra": "ignore"}

    models: list[str] | None = None
    defaults: LoraDefaults = LoraDefaults()
    description: str | None = None


class LoraInfo(BaseModel):
    """One entry of `GET /v1/loras`."""

    id: str
    object: str = "lora"
    models: list[str] | None = Field(None, description="base models it fits; null: any")
    defaults: dict[str, Any] = {}
    rank: int = 0
    experts: list[str] = Field(description="'all', or 'high_noise' / 'low_noise' (per-expert files)")
    size_bytes: int = 0
    description: str | None = None
    error: str | None = Field(None, description="why the LoRA cannot be used (broken file)")


class LoraList(BaseModel):
    object: str = "list"
    data: list[LoraInfo]


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file; ValueError if it is not one."""
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError("too short for a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES:
            raise ValueError("header too large")
        blob = f.read(n)
    if len(blob) != n:
        raise ValueError("truncated header")
    header = json.loads(blob)
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def _rank(header: dict[str, Any]) -> int:
    rank = 0
    for key, meta in header.items():
        if key.endswith((".lora_down.weight", ".lora_A.weight")) and isinstance(meta, dict):
            shape = meta.get("shape") or [0]
            rank = max(rank, int(shape[0]))
    return rank


def _sidecar(root: Path, name: str) -> LoraSidecar:
    for p in (root / f"{name}.json", root / name / f"{name}.json"):
        if p.is_file():
            return LoraSidecar.model_validate(json.loads(p.read_text()))
    return LoraSidecar()


def _files(root: Path, name: str) -> dict[str, Path]:
    single = root / f"{name}.safetensors"
    if single.is_file():
        return {"all": single}
    folder = root / name
    return {
        expert: folder / fname
        for expert, fname in zip(("high_noise", "low_noise"), EXPERT_FILES, strict=True)
        if (folder / fname).is_file()
    }


def describe(root: Path, name: str) -> LoraInfo | None:
    """Catalog entry of NAME, or None when there is no such LoRA."""
    if not NAME_RE.match(name):
        return None
    files = _files(root, name)
    if not files:
        return None
    info = LoraInfo(id=name, experts=sorted(files))
    try:
        side = _sidecar(root, name)
        info.models, info.description = side.models, side.description
        info.defaults = side.defaults.model_dump(exclude_none=True)
        for path in files.values():
            header = read_safetensors_header(path)
            info.rank = max(info.rank, _rank(header))
            info.size_bytes += path.stat().st_size
            if not any(k != "__metadata__" for k in header):
                raise ValueError(f"{path.name} holds no tensors")
    except (OSError, ValueError, ValidationError) as e:
        info.error = f"{type(e).__name__}: {e}".splitlines()[0][:300]
    return info


def catalog(root: Path | None) -> list[LoraInfo]:
    """Every LoRA of the folder, sorted by name (an unset or missing folder has none)."""
    if root is None or not root.is_dir():
        return []
    names = set()
    for p in root.iterdir():
        if p.is_file() and p.suffix == ".safetensors":
            names.add(p.stem)
        elif p.is_dir():
            names.add(p.name)
    out = [describe(root, n) for n in sorted(names)]
    return [i for i in out if i is not None]
