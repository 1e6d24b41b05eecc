"""A stored job record that cannot be read or rendered (corrupted, or written by a laxer version)
answers a clear 409 ``unreadable_record`` on GET, is left out of the list, and DELETE still
removes it and its assets."""

from __future__ import annotations

import json

import httpx
import pytest
import redis

from tests.service_support import wait_status

pytestmark = pytest.mark.integration

CORRUPTIONS = {
    "params_not_json": ("params", "{not json"),
    "params_wrong_shape": ("params", json.dumps({"width": "wide"})),
    "metadata_deep": ("metadata", json.dumps({"a": json.loads("[" * 300 + "]" * 300)})),
    "metadata_surrogate": ("metadata", '{"a": "\\ud800"}'),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_unreadable_record_get_409_list_ok_delete_works(
    client: httpx.Client, redis_url: str, service_data_dir, name: str
) -> None:
    vid = client.post("/v1/videos", json={"prompt": f"poison {name}", "num_inference_steps": 1}).json()["id"]
    wait_status(client, vid, {"completed"})
    folder = service_data_dir / "objects" / "videos" / vid
    assert (folder / "video.mp4").exists()
    field, value = CORRUPTIONS[name]
    redis.Redis.from_url(redis_url).hset(f"wanserve:job:{vid}", field, value)

    got = client.get(f"/v1/videos/{vid}")
    assert got.status_code == 409, got.text
    body = got.json()
    assert body["error"]["code"] == "unreadable_record" and f"DELETE /v1/videos/{vid}" in body["detail"]
    assert got.headers["x-should-retry"] == "false"
    listed = client.get("/v1/videos", params={"limit": 100})
    assert listed.status_code == 200 and vid not in [v["id"] for v in listed.json()["data"]]

    deleted = client.delete(f"/v1/videos/{vid}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": vid, "object": "video.deleted", "deleted": True}
    assert client.get(f"/v1/videos/{vid}").status_code == 404
    assert not folder.exists()
    r = redis.Redis.from_url(redis_url)
    assert not r.exists(f"wanserve:job:{vid}") and r.zscore("wanserve:jobs", vid) is None
