"""Out of the box, the demo model's service lists and runs its own 4-step LoRA over real HTTP."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from app.cli.serve import with_demo_loras
from app.core.config import Settings
from tests.service_support import ServiceProcess, wait_status

pytestmark = pytest.mark.integration


def test_demo_service_lists_and_runs_wanserve_demo_lightning(
    worker_factory: Callable[..., ServiceProcess],
    gateway_factory: Callable[..., ServiceProcess],
) -> None:
    lora_dir = with_demo_loras(Settings(model="wanserve-demo")).lora_dir  # what `wanserve serve` uses
    assert lora_dir is not None
    worker = worker_factory(model="wanserve-demo", lora_dir=lora_dir)
    gw = gateway_factory(model="wanserve-demo", lora_dir=lora_dir, poll_after_ms=100)
    with httpx.Client(base_url=str(gw.url), timeout=30) as client:
        (info,) = [d for d in client.get("/v1/loras").json()["data"] if d["id"] == "wanserve-demo-lightning"]
        assert info["error"] is None and info["models"] == ["wanserve-demo"]
        body = {
            "prompt": "a red circle moves to the left on a black background",
            "seed": 3,
            "loras": [{"name": "wanserve-demo-lightning"}],
        }
        r = client.post("/v1/videos", json=body)
        assert r.status_code == 202, r.text
        done = wait_status(client, r.json()["id"], {"completed", "failed"}, timeout=180)
        assert done["status"] == "completed", (done, worker.log()[-2000:])
        p = done["parameters"]
        assert (p["sampler"], p["num_inference_steps"]) == ("distill", 4)  # the sidecar's defaults
        assert p["loras"] == [{"name": "wanserve-demo-lightning", "scale": 1.0}]
        assert "unusable" not in worker.log()
