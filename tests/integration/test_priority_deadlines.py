"""Priority and deadlines with a real worker: high runs before normal before low, and a deadline
cancels a job wherever it is (queued: never started; running: stopped mid-run).

The session's tiny-ti2v worker runs one job at a time (0.05 s per step); a 50-step "blocker" keeps
it busy for a few seconds while the jobs under test wait in its queue.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from app.core import keys
from tests.sec_support import wanserve_cli
from tests.service_support import wait_status

pytestmark = [pytest.mark.integration]

SHORT = {"model": "tiny-ti2v", "num_frames": 5, "num_inference_steps": 2}
BLOCKER = {"model": "tiny-ti2v", "num_frames": 5, "num_inference_steps": 50, "prompt": "blocker"}


@pytest.fixture(scope="module")
def served(gateway_factory: Callable[..., Any], tiny_worker: Any) -> Iterator[tuple[Any, str, str]]:
    """A gateway with auth on and a fast deadline sweep; a key allowed `high`, and a default one."""
    gw = gateway_factory(auth=True, poll_after_ms=200, reaper_interval_s=0.3)
    tag = str(gw.pid)
    high = wanserve_cli(gw.env, "keys", "create", "--name", f"prio-hi-{tag}", "--max-priority", "high")
    plain = wanserve_cli(gw.env, "keys", "create", "--name", f"prio-{tag}")
    yield gw, high.stdout.strip(), plain.stdout.strip()
    gw.stop()


@pytest.fixture
def http(served: tuple[Any, str, str]) -> Iterator[httpx.Client]:
    gw, key, _ = served
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        yield c


def _create(http: httpx.Client, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    r = http.post("/v1/videos", json=body, headers=headers)
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()
    return job


def _started_at(r: redis.Redis, video_id: str) -> float:
    return float(json.loads(r.hget(keys.job(video_id), "started_at")))  # type: ignore[arg-type]


def _busy_worker(http: httpx.Client) -> str:
    blocker = _create(http, BLOCKER)["id"]
    wait_status(http, blocker, {"in_progress"})
    return blocker


def test_high_runs_before_normal_before_low(http: httpx.Client, redis_url: str) -> None:
    blocker = _busy_worker(http)
    low = _create(http, {**SHORT, "prompt": "low", "priority": "low"})
    normal = _create(http, {**SHORT, "prompt": "normal"})
    high = _create(http, {**SHORT, "prompt": "high", "priority": "high"})
    assert (low["priority"], normal["priority"], high["priority"]) == ("low", "normal", "high")
    # positions follow priority, not arrival: the video objects and GET /v1/queue agree
    ids = [high["id"], normal["id"], low["id"]]
    positions = [http.get(f"/v1/videos/{v}").json()["queue_position"] for v in ids]
    assert positions == sorted(positions) and len(set(positions)) == 3
    view = http.get("/v1/queue").json()
    waiting = [
        j["id"] for m in view["data"] if m["model"] == "tiny-ti2v" for j in m["jobs"] if j["id"] in ids
    ]
    assert waiting == ids
    assert http.get(f"/v1/videos/{blocker}").json()["status"] == "in_progress"  # all three waited
    for vid in [blocker, *ids]:
        assert (
            wait_status(http, vid, {"completed", "failed", "cancelled"}, timeout=120)["status"] == "completed"
        )
    r = redis.Redis.from_url(redis_url)
    starts = [_started_at(r, v) for v in ids]
    assert starts[0] < starts[1] < starts[2], starts


def test_priority_above_the_keys_limit_is_refused(served: tuple[Any, str, str]) -> None:
    gw, _, plain = served
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {plain}"}, timeout=30) as c:
        before = c.get("/v1/videos").json()["data"]
        r = c.post("/v1/videos", json={**SHORT, "prompt": "vip", "priority": "high"})
        assert r.status_code == 403, r.text
        assert r.json()["error"]["param"] == "priority"
        assert c.get("/v1/videos").json()["data"] == before  # nothing stored
        ok = c.post("/v1/videos", json={**SHORT, "prompt": "fine", "priority": "low"})
        assert ok.status_code == 202 and ok.json()["priority"] == "low"


@pytest.mark.parametrize(
    ("body", "headers", "param"),
    [
        ({"cancel_after": 0}, {}, "cancel_after"),
        ({"cancel_after": "soon"}, {}, "cancel_after"),
        ({"priority": "urgent"}, {}, "priority"),
        ({}, {"Cancel-After": "5 minutes"}, "Cancel-After"),
    ],
)
def test_bad_scheduling_input_is_a_400(
    http: httpx.Client, body: dict[str, Any], headers: dict[str, str], param: str
) -> None:
    r = http.post("/v1/videos", json={**SHORT, "prompt": "bad", **body}, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_queued_job_past_its_deadline_is_cancelled_without_running(http: httpx.Client) -> None:
    blocker = _busy_worker(http)
    job = _create(http, {**SHORT, "prompt": "in a hurry", "cancel_after": 1})
    assert job["cancel_after"] == 1 and job["deadline_at"] in (job["created_at"] + 1, job["created_at"] + 2)
    done = wait_status(http, job["id"], {"cancelled", "completed", "failed"}, timeout=20)
    assert done["status"] == "cancelled"
    assert "deadline" in done["cancel_reason"]
    assert http.get(f"/v1/videos/{blocker}").json()["status"] == "in_progress"  # the worker never got to it
    wait_status(http, blocker, {"completed"}, timeout=120)
    time.sleep(0.5)  # the worker takes the cancelled job's message next, and must skip it
    after = http.get(f"/v1/videos/{job['id']}").json()
    assert after["status"] == "cancelled" and after["started_at"] is None and after["attempts"] == 0
    logs = http.get(f"/v1/videos/{job['id']}/logs").json()["data"]
    assert logs[-1]["event"] == "video.cancelled" and "deadline" in logs[-1]["message"]


def test_running_job_past_its_deadline_stops_mid_run(http: httpx.Client) -> None:
    job = _create(http, {**BLOCKER, "prompt": "too long"}, **{"Cancel-After": "1500ms"})
    assert job["cancel_after"] == 1.5
    done = wait_status(http, job["id"], {"cancelled", "completed", "failed"}, timeout=60)
    assert done["status"] == "cancelled", done
    assert done["started_at"] is not None and 0 < done["step"] < done["total_steps"]
    assert "deadline" in done["cancel_reason"]
    logs = http.get(f"/v1/videos/{job['id']}/logs").json()["data"]
    assert logs[-1]["event"] == "video.cancelled" and "deadline" in logs[-1]["message"]
