"""Retrieve, list, cancel and delete over HTTP in process, with auth on: another key's job is a
404 on every route (it looks absent), the owner's job is cancelled and deleted as documented."""

from __future__ import annotations

import pytest

from app.core import keys
from app.core.status import JobStatus
from tests.service.conftest import MODEL, Service

pytestmark = pytest.mark.anyio


async def test_other_keys_jobs_are_absent(secured: Service) -> None:
    alice, bob = await secured.key("alice"), await secured.key("bob")
    assert (await secured.client.post("/v1/videos", json={"prompt": "x"})).status_code == 401
    made = await secured.client.post("/v1/videos", json={"prompt": "alice's fox"}, headers=alice)
    assert made.status_code == 202, made.text
    vid = made.json()["id"]

    for method, path in [
        ("GET", f"/v1/videos/{vid}"),
        ("POST", f"/v1/videos/{vid}/cancel"),
        ("DELETE", f"/v1/videos/{vid}"),
        ("POST", f"/v1/videos/{vid}/remix"),
    ]:
        resp = await secured.client.request(method, path, headers=bob, json={"prompt": "mine now"})
        assert resp.status_code == 404, (method, path, resp.text)
        assert resp.json()["error"]["type"] == "not_found_error"
    listed = await secured.client.get("/v1/videos", headers=bob)
    assert listed.status_code == 200 and listed.json()["data"] == []
    mine = await secured.client.get("/v1/videos", headers=alice)
    assert [v["id"] for v in mine.json()["data"]] == [vid]

    rec = await secured.state.store.get(vid)
    assert rec is not None and rec.status is JobStatus.QUEUED  # bob's cancel and delete did nothing
    assert secured.queue.revoked == []


async def test_owner_cancels_then_deletes(secured: Service) -> None:
    alice = await secured.key("alice")
    vid = (await secured.client.post("/v1/videos", json={"prompt": "x"}, headers=alice)).json()["id"]

    cancelled = await secured.client.post(f"/v1/videos/{vid}/cancel", headers=alice)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert "openai-poll-after-ms" not in cancelled.headers
    assert secured.queue.revoked == [vid]
    assert secured.sync_redis.zrank(keys.queued(MODEL), vid) is None

    again = await secured.client.post(f"/v1/videos/{vid}/cancel", headers=alice)
    assert again.status_code == 409
    assert again.json()["error"]["type"] == "conflict_error"

    deleted = await secured.client.delete(f"/v1/videos/{vid}", headers=alice)
    assert deleted.status_code == 200
    assert deleted.json() == {"id": vid, "object": "video.deleted", "deleted": True}
    assert (await secured.client.get(f"/v1/videos/{vid}", headers=alice)).status_code == 404
    assert await secured.state.store.get(vid) is None


async def test_remix_of_an_unfinished_video_is_a_409(service: Service) -> None:
    vid = (await service.client.post("/v1/videos", json={"prompt": "x"})).json()["id"]
    resp = await service.client.post(f"/v1/videos/{vid}/remix", json={"prompt": "y"})
    assert resp.status_code == 409, resp.text
    assert len(service.queue.enqueued) == 1
