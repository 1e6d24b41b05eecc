"""Style controls and prompt extension end to end: real gateway, real Celery workers, real Redis.

The session gateway's tiny-ti2v worker has no extension model (so `prompt_extend` is a 400 there);
a private stack (own redis-server, a worker with a tiny random chat model as extension LLM, and a
gateway) shows the extension path. See docs/styles.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service_support import (
    RedisServer,
    ServiceProcess,
    _spawn,
    service_env,
    start_gateway,
    start_worker,
    wait_for,
    wait_status,
)
from tests.style_support import build_tiny_chat_model

pytestmark = pytest.mark.integration

STYLE = {"color_tone": "warm", "lighting": ["backlight", "soft"], "shot_size": "close-up"}
STYLED = "A red fox walks through snow. Close-up shot, soft light, backlight, warm color tone."


def _problem(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    return body


def test_styles_catalog(client: httpx.Client) -> None:
    resp = client.get("/v1/styles")
    assert resp.status_code == 200
    body = resp.json()
    assert body["order"][0] == "shot_size"
    cats = {c["category"]: c for c in body["data"]}
    assert set(cats) == {
        "lighting",
        "time_of_day",
        "shot_size",
        "composition",
        "lens",
        "camera_angle",
        "color_tone",
        "camera_movement",
    }
    assert {"value": "close_up", "phrase": "close-up shot", "phrase_zh": "特写", "group": "size"} in cats[
        "shot_size"
    ]["values"]
    spec = client.get("/openapi.json").json()
    assert "/v1/styles" in spec["paths"]


def test_style_reaches_revised_prompt(client: httpx.Client) -> None:
    resp = client.post("/v1/videos", json={"prompt": "A red fox walks through snow", "style": STYLE})
    assert resp.status_code == 202, resp.text
    created = resp.json()
    assert created["prompt"] == "A red fox walks through snow"
    assert created["revised_prompt"] == STYLED
    assert created["style"] == {
        "shot_size": ["close_up"],
        "lighting": ["soft", "backlight"],
        "color_tone": ["warm"],
    }
    assert created["prompt_extension"] is None
    done = wait_status(client, created["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["revised_prompt"] == STYLED and done["prompt"] == "A red fox walks through snow"


def test_style_in_multipart(client: httpx.Client) -> None:
    """multipart/form-data (what the OpenAI SDK sends): style[category] fields, or style as JSON."""
    fields = [
        ("prompt", "A red fox walks through snow"),
        ("style[shot_size]", "close_up"),
        ("style[lighting][]", "soft"),
        ("style[lighting][]", "backlight"),
        ("style[color_tone]", "warm"),
    ]
    resp = client.post("/v1/videos", files=[(k, (None, v)) for k, v in fields])
    assert resp.status_code == 202, resp.text
    assert resp.json()["revised_prompt"] == STYLED
    as_json = [("prompt", "A red fox walks through snow"), ("style", json.dumps(STYLE))]
    resp = client.post("/v1/videos", files=[(k, (None, v)) for k, v in as_json])
    assert resp.status_code == 202, resp.text
    assert resp.json()["revised_prompt"] == STYLED
    bad = client.post("/v1/videos", files=[("prompt", (None, "a fox")), ("prompt_extend", (None, "true"))])
    assert _problem(bad)["errors"][0]["field"] == "prompt_extend"


@pytest.mark.parametrize(
    ("style", "field", "needle"),
    [
        (
            {"lens": "zoom"},
            "style.lens",
            "allowed: ultra_wide, wide_angle, fisheye, normal, telephoto, macro",
        ),
        ({"mood": "happy"}, "style", "allowed categories: lighting, time_of_day, shot_size"),
        ({"lighting": ["soft", "hard"]}, "style.lighting", "cannot be combined"),
    ],
)
def test_bad_style_is_400(client: httpx.Client, style: dict[str, Any], field: str, needle: str) -> None:
    body = _problem(client.post("/v1/videos", json={"prompt": "a fox", "style": style}))
    [err] = body["errors"]
    assert err["field"] == field and needle in err["reason"]


def test_prompt_extend_without_model_is_400(client: httpx.Client) -> None:
    body = _problem(client.post("/v1/videos", json={"prompt": "a fox", "prompt_extend": True}))
    [err] = body["errors"]
    assert err["field"] == "prompt_extend"
    assert "no extension model is configured" in err["reason"]
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert models["tiny-ti2v"]["prompt_extend_available"] is False


# ---------------------------------------------------------------------------------------------
# A private stack whose worker has an extension LLM


@pytest.fixture(scope="module")
def extend_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    llm = build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat-llm"))
    data_dir: Path = tmp_path_factory.mktemp("extend-data")
    redis = RedisServer().start()
    procs: list[ServiceProcess] = []
    try:
        procs.append(
            start_worker(
                redis.url,
                data_dir,
                model="tiny-ti2v",
                prompt_extend_model_path=str(llm),
                prompt_extend_max_new_tokens=16,
                prompt_extend_timeout_s=60,
            )
        )
        gw = start_gateway(redis.url, data_dir, poll_after_ms=200)
        procs.append(gw)
        with httpx.Client(base_url=str(gw.url), timeout=30) as c:
            yield c
    finally:
        for p in reversed(procs):
            p.stop()
        redis.close()


def test_prompt_extension_end_to_end(extend_stack: httpx.Client) -> None:
    c = extend_stack
    models = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
    assert models["tiny-ti2v"]["prompt_extend_available"] is True

    resp = c.post(
        "/v1/videos",
        json={"prompt": "A red fox walks through snow", "style": STYLE, "prompt_extend": True, "seed": 3},
    )
    assert resp.status_code == 202, resp.text
    created = resp.json()
    assert created["prompt_extension"]["status"] == "pending"
    assert created["revised_prompt"] == STYLED  # until the worker rewrites it

    done = wait_status(c, created["id"], {"completed", "failed"}, timeout=120)
    assert done["status"] == "completed", done
    ext = done["prompt_extension"]
    assert ext["status"] == "extended", ext
    assert ext["language"] == "en" and ext["reason"] is None and ext["model"]
    assert done["prompt"] == "A red fox walks through snow"
    revised = done["revised_prompt"]
    assert revised != STYLED and revised.endswith("warm color tone.")
    assert revised.count("warm color tone") == 1
    assert "prompt_extension" in done["timings"]


# ---------------------------------------------------------------------------------------------
# Extension on its own queue: gateway with prompt_extend_queue=true, an extension-only worker
# (python -m worker.extend_worker) and a model worker without an LLM


@pytest.fixture(scope="module")
def queue_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, ServiceProcess]]:
    llm = build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat-llm-q"))
    data_dir: Path = tmp_path_factory.mktemp("extend-queue-data")
    redis = RedisServer().start()
    procs: list[ServiceProcess] = []
    try:
        procs.append(start_worker(redis.url, data_dir, model="tiny-ti2v"))
        env = service_env(
            redis.url,
            data_dir,
            worker_id="test-extender",
            prompt_extend_model_path=str(llm),
            prompt_extend_max_new_tokens=16,
        )
        ext = _spawn("extender", ["-m", "worker.extend_worker"], env, data_dir / "logs")
        procs.append(ext)

        def registered() -> bool:
            if not ext.alive():
                raise RuntimeError(f"extension worker exited:\n{ext.log()}")
            return bool(redis.client().zscore("wanserve:extenders", "test-extender"))

        wait_for(registered, 120, "extension worker registered", interval=0.2)
        gw = start_gateway(redis.url, data_dir, poll_after_ms=200, prompt_extend_queue=True)
        procs.append(gw)
        with httpx.Client(base_url=str(gw.url), timeout=30) as c:
            yield c, ext
    finally:
        for p in reversed(procs):
            p.stop()
        redis.close()


def test_prompt_extension_on_its_own_queue(queue_stack: tuple[httpx.Client, ServiceProcess]) -> None:
    c, extender = queue_stack
    models = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
    assert models["tiny-ti2v"]["prompt_extend_available"] is True  # from the extension worker

    resp = c.post(
        "/v1/videos", json={"prompt": "A red fox walks through snow", "style": STYLE, "prompt_extend": True}
    )
    assert resp.status_code == 202, resp.text
    done = wait_status(c, resp.json()["id"], {"completed", "failed"}, timeout=120)
    assert done["status"] == "completed", done
    assert done["prompt_extension"]["status"] == "extended", done["prompt_extension"]
    assert done["revised_prompt"] != STYLED and done["revised_prompt"].endswith("warm color tone.")
    # the model worker did not extend it again (it has no LLM: it would have recorded "skipped")
    assert "prompt_extension" not in done["timings"]

    # once the extension worker is gone (it deregisters on shutdown), prompt_extend is a 400 again
    extender.stop()

    def refused() -> bool:
        resp = c.post("/v1/videos", json={"prompt": "a fox", "prompt_extend": True})
        return resp.status_code == 400 and resp.json()["errors"][0]["field"] == "prompt_extend"

    wait_for(refused, 15, "prompt_extend refused without an extension worker", interval=0.3)
    models = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
    assert models["tiny-ti2v"]["prompt_extend_available"] is False
