"""Extensions, edits and remixes over HTTP in process: the same create path as ``POST /v1/videos``
(one enqueue, the Idempotency-Key over the request as sent), each fitting the job to its source."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.status import JobStatus
from app.core.storage import job_key
from tests.service.conftest import MODEL, Service

pytestmark = pytest.mark.anyio
SOURCE_MP4 = b"\x00\x00\x00\x18ftypmp42 stand-in for a finished video"


async def _completed(service: Service, **body: Any) -> str:
    """A finished job of the caller, as a worker would leave it (record and stored video)."""
    vid = (await service.client.post("/v1/videos", json={"prompt": "a fox", **body})).json()["id"]
    store = service.state.store
    rec = await store.get(vid)
    assert rec is not None
    rec = await store.transition(rec, JobStatus.IN_PROGRESS)
    key = job_key(vid, "video")
    service.state.storage.put_bytes(key, SOURCE_MP4, "video/mp4")
    await store.transition(rec, JobStatus.COMPLETED, {"assets": {"video": key}})
    return vid


async def test_extension_of_a_finished_video(service: Service) -> None:
    src = await _completed(service, size="64x32", seconds="0.25")
    resp = await service.client.post(
        "/v1/videos/extensions", json={"prompt": "it keeps running", "seconds": "0.5", "video": {"id": src}}
    )
    assert resp.status_code == 202, resp.text
    video = resp.json()
    assert video["operation"] == "extend" and video["source_video_id"] == src
    assert video["size"] == "64x32" and video["model"] == MODEL
    assert [e.job_id for e in service.queue.enqueued] == [src, video["id"]]
    rec = await service.state.store.get(video["id"])
    assert rec is not None and rec.source_key == f"videos/{video['id']}/source.mp4"
    assert service.state.storage.get_bytes(rec.source_key) == SOURCE_MP4  # a copy: the source may go
    assert (rec.params.source_frames, rec.params.num_frames) == (9, 9 + 12)  # 0.25 s, + 0.5 s at 24 fps


async def test_edit_replays_by_idempotency_key_over_the_request_as_sent(service: Service) -> None:
    src = await _completed(service)
    body = {"prompt": "the fox, in snow", "strength": 0.5, "video": {"id": src}}
    headers = {"Idempotency-Key": "edit-1"}
    first = await service.client.post("/v1/videos/edits", json=body, headers=headers)
    again = await service.client.post("/v1/videos/edits", json=body, headers=headers)
    assert first.status_code == again.status_code == 202, first.text
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["operation"] == "edit"
    assert len(service.queue.enqueued) == 2  # the source and one edit

    stronger = await service.client.post(
        "/v1/videos/edits", json={**body, "strength": 0.9}, headers=headers
    )  # `strength` is taken out of the body before the job is made; the key still sees it
    assert stronger.status_code == 400, stronger.text
    assert len(service.queue.enqueued) == 2


async def test_remix_keeps_the_source_parameters(service: Service) -> None:
    src = await _completed(service, size="32x64", seed=11)
    resp = await service.client.post(f"/v1/videos/{src}/remix", json={"prompt": "the fox at night"})
    assert resp.status_code == 202, resp.text
    video = resp.json()
    assert video["remixed_from_video_id"] == src and video["operation"] == "remix"
    rec = await service.state.store.get(video["id"])
    assert rec is not None and rec.prompt == "the fox at night"
    assert (rec.params.width, rec.params.height, rec.params.seed) == (32, 64, 11)


async def test_bad_source_requests_are_400s(service: Service) -> None:
    src = await _completed(service)
    cases = [
        ({"prompt": "x", "seconds": "0.5"}, "video"),
        ({"prompt": "x", "seconds": "-1", "video": {"id": src}}, "seconds"),
    ]
    for body, param in cases:
        resp = await service.client.post("/v1/videos/extensions", json=body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == param
    resp = await service.client.post(
        "/v1/videos/edits", json={"prompt": "x", "strength": 2, "video": {"id": src}}
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "strength"
    assert len(service.queue.enqueued) == 1  # only the source
