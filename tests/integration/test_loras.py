"""LoRAs over real HTTP with a real worker: catalog, validation, defaults, and that a job
without LoRAs after a LoRA job is byte-identical to one before it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors.torch import save_file

from model import load_pipeline
from tests.service_support import ServiceProcess, wait_status

pytestmark = pytest.mark.integration

MODEL = "tiny-t2v-a14b"
DISTILL = {"num_inference_steps": 4, "guidance_scale": 1.0, "sampler": "distill", "shift": 5.0}


def _lora_sd(dit: torch.nn.Module, seed: int, rank: int = 4) -> dict[str, torch.Tensor]:
    """Lightning key layout (official names, lora_down/lora_up + alpha) at tiny size."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, mod in dit.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.startswith("blocks."):
            out_f, in_f = mod.weight.shape
            sd[f"diffusion_model.{name}.lora_down.weight"] = torch.randn(rank, in_f, generator=g) * 0.3
            sd[f"diffusion_model.{name}.lora_up.weight"] = torch.randn(out_f, rank, generator=g) * 0.3
            sd[f"diffusion_model.{name}.alpha"] = torch.tensor(float(rank))
    return sd


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loras")
    pipe = load_pipeline(MODEL)
    (root / "light").mkdir()
    save_file(_lora_sd(pipe.transformer, 1), str(root / "light" / "high_noise_model.safetensors"))
    save_file(_lora_sd(pipe.transformer_2, 2), str(root / "light" / "low_noise_model.safetensors"))
    (root / "light.json").write_text(json.dumps({"models": [MODEL], "defaults": DISTILL}))
    save_file(_lora_sd(pipe.transformer, 3), str(root / "style.safetensors"))
    save_file(_lora_sd(pipe.transformer, 4), str(root / "other.safetensors"))
    (root / "other.json").write_text(json.dumps({"models": ["tiny-ti2v"]}))
    (root / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    return root


@pytest.fixture
def lora_client(
    lora_dir: Path,
    worker_factory: Callable[..., ServiceProcess],
    gateway_factory: Callable[..., ServiceProcess],
) -> Any:
    worker = worker_factory(model=MODEL, lora_dir=lora_dir)
    gw = gateway_factory(lora_dir=lora_dir, model=MODEL, max_loras_per_request=2, poll_after_ms=100)
    with httpx.Client(base_url=str(gw.url), timeout=30) as c:
        yield c, worker


def _run(client: httpx.Client, **extra: Any) -> tuple[dict[str, Any], bytes]:
    body = {"prompt": "a fox", "size": "32x32", "num_frames": 5, "seed": 11, **extra}
    r = client.post("/v1/videos", json=body)
    assert r.status_code == 202, r.text
    done = wait_status(client, r.json()["id"], {"completed", "failed"}, timeout=180)
    assert done["status"] == "completed", done
    return done, client.get(f"/v1/videos/{done['id']}/content").content


def _field(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return str(r.json()["errors"][0]["field"])


def test_lora_jobs_and_bit_identical_no_lora_job(lora_client: Any) -> None:
    client, worker = lora_client
    listed = {d["id"]: d for d in client.get("/v1/loras").json()["data"]}
    assert set(listed) == {"light", "style", "other", "broken"}
    assert listed["light"]["experts"] == ["high_noise", "low_noise"] and listed["light"]["rank"] == 4
    assert listed["light"]["defaults"] == DISTILL and listed["light"]["models"] == [MODEL]
    assert listed["style"]["experts"] == ["all"] and listed["style"]["models"] is None
    assert listed["broken"]["error"] and listed["light"]["error"] is None
    assert "LoRA broken is unusable" in worker.log()  # checked at worker start, not fatal

    before, video_before = _run(client, **DISTILL)
    lora, video_lora = _run(client, loras=[{"name": "light", "scale": 1.0}])  # defaults from the sidecar
    p = lora["parameters"]
    assert p["loras"] == [{"name": "light", "scale": 1.0}]
    assert (p["num_inference_steps"], p["sampler"], p["shift"], p["guidance_scale"]) == (
        4,
        "distill",
        5.0,
        [1.0, 1.0],
    )
    assert video_lora != video_before
    _, video_two = _run(
        client, loras=[{"name": "light", "scale": 0.5}, {"name": "style", "scale": 1.0}], **DISTILL
    )
    assert video_two not in (video_lora, video_before)
    after, video_after = _run(client, **DISTILL)
    assert after["parameters"]["loras"] == []
    assert video_after == video_before  # the LoRAs left nothing behind

    # multipart: loras as a JSON string
    r = client.post(
        "/v1/videos",
        data={
            "prompt": "a fox",
            "size": "32x32",
            "num_frames": "5",
            "loras": '[{"name": "style", "scale": 0.7}]',
        },
    )
    assert r.status_code == 202, r.text
    assert r.json()["parameters"]["loras"] == [{"name": "style", "scale": 0.7}]


def test_lora_validation_names_the_field(lora_client: Any) -> None:
    client, _ = lora_client
    base = {"prompt": "a fox", "size": "32x32", "num_frames": 5}
    cases = [
        ([{"name": "nope"}], "loras[0].name"),
        ([{"name": "style"}, {"name": "other"}], "loras[1].name"),  # for another base model
        ([{"name": "broken"}], "loras[0].name"),
        ([{"name": "style", "scale": 99}], "loras[0].scale"),
        ([{"name": "style"}, {"name": "light"}, {"name": "other"}], "loras"),  # too many (max 2)
        ([{"name": "../style"}], "loras[0].name"),  # names only, never paths
    ]
    for loras, field in cases:
        assert _field(client.post("/v1/videos", json={**base, "loras": loras})) == field, loras
    r = client.post("/v1/videos", json={**base, "loras": [{"name": "style", "path": "/etc/passwd"}]})
    assert r.status_code == 400 and "loras" in _field(r)
