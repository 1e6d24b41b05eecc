"""The `/v1/videos` HTTP contract, in process: create (JSON and multipart), validation, replay,
and the queue going down; the job store is real (Redis + its Lua scripts), the broker recorded."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from app.core import keys
from app.core.celeryconf import GENERATE_TASK
from tests.service.conftest import MODEL, Service

pytestmark = pytest.mark.anyio


def _png(width: int = 48, height: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 60)).save(buf, format="PNG")
    return buf.getvalue()


def _assert_openai_error(resp: Any, status: int, param: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status
    assert body["error"]["param"] == param
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"]


async def test_create_json_queues_one_job(service: Service) -> None:
    resp = await service.client.post("/v1/videos", json={"prompt": "a fox", "size": "64x32", "seed": 7})
    assert resp.status_code == 202, resp.text
    video = resp.json()
    assert video["object"] == "video" and video["status"] == "queued"
    assert video["model"] == MODEL and video["size"] == "64x32"
    assert video["queue_position"] == 1
    assert resp.headers["openai-poll-after-ms"]
    [sent] = service.queue.enqueued
    assert (sent.job_id, sent.model_id, sent.task) == (video["id"], MODEL, GENERATE_TASK)
    stored = await service.state.store.get(video["id"])
    assert stored is not None and stored.params.seed == 7 and stored.input_key is None
    assert service.sync_redis.zrank(keys.queued(MODEL), video["id"]) == 0

    got = await service.client.get(f"/v1/videos/{video['id']}")
    assert got.status_code == 200 and got.json()["id"] == video["id"]


async def test_create_multipart_stores_the_image(service: Service) -> None:
    files = {"input_reference": ("cat.png", _png(), "image/png")}
    data = {"prompt": "the cat blinks", "seconds": "0.25", "metadata[team]": "blue"}
    resp = await service.client.post("/v1/videos", data=data, files=files)
    assert resp.status_code == 202, resp.text
    video = resp.json()
    assert video["metadata"] == {"team": "blue"}
    assert [e.job_id for e in service.queue.enqueued] == [video["id"]]
    rec = await service.state.store.get(video["id"])
    assert rec is not None and rec.input_key is not None and rec.params.has_image
    stored = Image.open(io.BytesIO(service.state.storage.get_bytes(rec.input_key)))
    assert stored.format == "PNG" and stored.size == (48, 40)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"size": "64x32"}, "prompt"),
        ({"prompt": "x", "size": "640x480"}, "size"),
        ({"prompt": "x", "model": "wan2.2-nope"}, "model"),
        ({"prompt": "x", "seconds": "1", "num_frames": 5}, "seconds"),
        ({"prompt": "x", "webhook_url": "http://127.0.0.1/hook"}, "webhook_url"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(
    service: Service, body: dict[str, Any], param: str
) -> None:
    resp = await service.client.post("/v1/videos", json=body)
    _assert_openai_error(resp, 400, param)
    assert service.queue.enqueued == []
    assert service.sync_redis.zcard(keys.JOBS_INDEX) == 0


async def test_bad_multipart_file_field_is_a_400(service: Service) -> None:
    files = {"picture": ("cat.png", _png(), "image/png")}
    resp = await service.client.post("/v1/videos", data={"prompt": "x"}, files=files)
    _assert_openai_error(resp, 400, "picture")
    assert service.queue.enqueued == []


async def test_idempotency_key_replays_the_first_job(service: Service) -> None:
    headers = {"Idempotency-Key": "order-41"}
    first = await service.client.post("/v1/videos", json={"prompt": "a fox"}, headers=headers)
    again = await service.client.post("/v1/videos", json={"prompt": "a fox"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(service.queue.enqueued) == 1

    other = await service.client.post("/v1/videos", json={"prompt": "a wolf"}, headers=headers)
    assert other.status_code == 400, other.text
    assert len(service.queue.enqueued) == 1


async def test_queue_down_is_a_503_and_leaves_nothing_behind(service: Service) -> None:
    service.queue.down = True
    files = {"input_reference": ("cat.png", _png(), "image/png")}
    resp = await service.client.post("/v1/videos", data={"prompt": "x"}, files=files)
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["type"] == "server_error"
    assert service.sync_redis.zcard(keys.JOBS_INDEX) == 0
    assert not any(service.state.settings.storage_root.rglob("*.png"))

    service.queue.down = False
    retry = await service.client.post("/v1/videos", json={"prompt": "x"})
    assert retry.status_code == 202
