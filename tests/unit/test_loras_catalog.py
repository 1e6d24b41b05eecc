"""The gateway's LoRA catalog (safetensors headers read without torch) and the request rules."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from app.core.config import Settings
from app.core.errors import InvalidInput
from app.core.lora_request import apply_lora_request
from app.core.loras import catalog, describe, read_safetensors_header
from app.core.schemas import VideoCreate


def write_safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    """A valid safetensors file of float32 zeros, written by hand (no torch needed)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * offset)


def lora(path: Path, rank: int = 8) -> None:
    write_safetensors(
        path,
        {
            "diffusion_model.blocks.0.self_attn.q.lora_down.weight": [rank, 16],
            "diffusion_model.blocks.0.self_attn.q.lora_up.weight": [16, rank],
            "diffusion_model.blocks.0.self_attn.q.alpha": [],
        },
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    lora(tmp_path / "style.safetensors", rank=4)
    (tmp_path / "fast").mkdir()
    lora(tmp_path / "fast" / "high_noise_model.safetensors", rank=16)
    lora(tmp_path / "fast" / "low_noise_model.safetensors", rank=16)
    defaults = {"num_inference_steps": 4, "guidance_scale": 1.0, "sampler": "distill", "shift": 5.0}
    (tmp_path / "fast" / "fast.json").write_text(json.dumps({"models": ["m-a14b"], "defaults": defaults}))
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 8)
    lora(tmp_path / "badside.safetensors")
    (tmp_path / "badside.json").write_text('{"defaults": {"steps": 4}}')
    (tmp_path / "empty").mkdir()  # no expert files: not a LoRA
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def settings(root: Path, **kw: object) -> Settings:
    return Settings(lora_dir=root, max_loras_per_request=2, lora_scale_max=2.0, **kw)  # type: ignore[arg-type]


def test_catalog_reads_headers_and_sidecars(root: Path) -> None:
    items = {i.id: i for i in catalog(root)}
    assert set(items) == {"style", "fast", "bad", "badside"}
    assert items["style"].rank == 4 and items["style"].experts == ["all"] and items["style"].models is None
    fast = items["fast"]
    assert fast.rank == 16 and fast.experts == ["high_noise", "low_noise"] and fast.models == ["m-a14b"]
    assert fast.defaults["sampler"] == "distill" and fast.size_bytes > 0 and fast.error is None
    assert items["bad"].error and "header" in items["bad"].error
    assert items["badside"].error and "ValidationError" in items["badside"].error
    assert describe(root, "../style") is None and describe(root, "nope") is None
    assert catalog(None) == [] and catalog(root / "missing") == []
    assert read_safetensors_header(root / "style.safetensors")["diffusion_model.blocks.0.self_attn.q.alpha"]


def test_request_defaults_fill_only_unset_fields(root: Path) -> None:
    req = VideoCreate(prompt="x", loras=[{"name": "fast"}], shift=3.0)  # type: ignore[list-item]
    out, refs = apply_lora_request(req, "m-a14b", settings(root))
    assert (out.num_inference_steps, out.sampler, out.guidance_scale, out.shift) == (4, "distill", 1.0, 3.0)
    assert [(r.name, r.scale) for r in refs] == [("fast", 1.0)]
    per_expert = VideoCreate(prompt="x", loras=[{"name": "fast"}], guidance_scale_low_noise=2.0)  # type: ignore[list-item]
    assert apply_lora_request(per_expert, "m-a14b", settings(root))[0].guidance_scale is None
    plain = VideoCreate(prompt="x")
    assert apply_lora_request(plain, "m", settings(root)) == (plain, [])


@pytest.mark.parametrize(
    ("loras", "model", "field"),
    [
        ([{"name": "nope"}], "m", "loras[0].name"),
        ([{"name": "fast"}], "other-model", "loras[0].name"),
        ([{"name": "bad"}], "m", "loras[0].name"),
        ([{"name": "style", "scale": 2.5}], "m", "loras[0].scale"),
        ([{"name": "style", "scale": float("nan")}], "m", "loras[0].scale"),
        ([{"name": "style"}, {"name": "style"}], "m", "loras[1].name"),
        ([{"name": "style"}] * 3, "m", "loras"),
    ],
)
def test_request_errors_name_the_field(
    root: Path, loras: list[dict[str, object]], model: str, field: str
) -> None:
    req = VideoCreate(prompt="x", loras=loras)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as e:
        apply_lora_request(req, model, settings(root))
    assert e.value.errors[0].field == field


def test_no_lora_dir_and_multipart_forms(root: Path) -> None:
    req = VideoCreate(prompt="x", loras=[{"name": "style"}])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="WANSERVE_LORA_DIR"):
        apply_lora_request(req, "m", Settings(lora_dir=None))
    flat = VideoCreate.model_validate(
        {"prompt": "x", "loras": {"1": {"name": "b"}, "0": {"name": "a", "scale": "0.5"}}}
    )
    assert [(r.name, r.scale) for r in flat.loras or []] == [("a", 0.5), ("b", 1.0)]
    text = VideoCreate.model_validate({"prompt": "x", "loras": '[{"name": "a"}]'})
    assert text.loras and text.loras[0].name == "a"
