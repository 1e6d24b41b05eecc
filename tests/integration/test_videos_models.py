"""A second model: one queue per model id, two-expert guidance fields, image rules."""

from __future__ import annotations

import httpx
import pytest

from tests.service_support import wait_for, wait_status

pytestmark = pytest.mark.integration


def test_two_expert_model_on_its_own_queue(client: httpx.Client, worker_factory) -> None:
    w = worker_factory("tiny-t2v-a14b")
    wait_for(
        lambda: "tiny-t2v-a14b" in {m["id"] for m in client.get("/v1/models").json()["data"]}, 10, "model"
    )
    m = {d["id"]: d for d in client.get("/v1/models").json()["data"]}["tiny-t2v-a14b"]
    assert set(m["default_guidance_scale"]) == {"high_noise", "low_noise"} and m["image_input"] == "none"
    r = client.post(
        "/v1/videos",
        json={
            "prompt": "two experts",
            "model": "tiny-t2v-a14b",
            "num_inference_steps": 2,
            "guidance_scale": 2.0,
            "guidance_scale_high_noise": 6.0,
        },
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["parameters"]["guidance_scale"] == [2.0, 6.0]  # [low_noise, high_noise]
    done = wait_status(client, job["id"], {"completed", "failed"})
    assert done["status"] == "completed" and done["worker_id"] == w.worker_id
    bad = client.post(
        "/v1/videos",
        json={
            "prompt": "x",
            "model": "tiny-t2v-a14b",
            "input_reference": {"image_url": "data:image/png;base64,AAAA"},
        },
    )
    assert bad.status_code == 400
    w.stop()
    wait_for(
        lambda: "tiny-t2v-a14b" not in {m["id"] for m in client.get("/v1/models").json()["data"]}, 15, "gone"
    )
    # within WANSERVE_MODEL_GRACE_S a model whose worker is restarting still takes jobs (they wait)
    later = client.post("/v1/videos", json={"prompt": "x", "model": "tiny-t2v-a14b"})
    assert later.status_code == 202 and later.json()["status"] == "queued"
    assert client.post(f"/v1/videos/{later.json()['id']}/cancel").json()["status"] == "cancelled"
