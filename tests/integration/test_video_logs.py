"""`GET /v1/videos/{id}/logs`: a real job's stages, steps and timings; owner-only."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.integration.eco_support import Service, start_service
from tests.sec_support import create_api_key

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def served(gateway_factory: Callable[..., Any], tiny_worker: Any) -> Iterator[tuple[Service, Any]]:
    svc, gw = start_service(gateway_factory, key_name="logs")
    yield svc, gw
    gw.stop()


def _wait(http: httpx.Client, vid: str, states: set[str], timeout: float = 120) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = http.get(f"/v1/videos/{vid}").json()
        if job["status"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"{vid} never reached {states}")


def test_logs_of_a_completed_and_a_cancelled_job(served: tuple[Service, Any]) -> None:
    service, gw = served
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=30) as http:
        body = {"model": "tiny-ti2v", "prompt": "logs please", "num_frames": 5, "num_inference_steps": 3}
        vid = http.post("/v1/videos", json=body).json()["id"]
        assert _wait(http, vid, {"completed", "failed"})["status"] == "completed"
        logs = http.get(f"/v1/videos/{vid}/logs")
        assert logs.status_code == 200, logs.text
        lines = logs.json()["data"]
        events = [ln["event"] for ln in lines]
        assert events[0] == "video.queued" and "video.started" in events and "video.completed" in events
        steps = [ln["message"] for ln in lines if ln["event"] == "video.progress"]
        assert steps[-1] == "denoising step 3/3"
        assert lines[-1]["event"] == "timings" and "denoising" in lines[-1]["message"]
        assert [ln["at"] for ln in lines] == sorted(ln["at"] for ln in lines)

        other = create_api_key(gw.env, f"logs-other-{time.monotonic_ns()}")
        stranger = http.get(f"/v1/videos/{vid}/logs", headers={"Authorization": f"Bearer {other}"})
        assert stranger.status_code == 404  # owner-only: another key's job does not exist for it

        slow = http.post("/v1/videos", json={**body, "num_inference_steps": 40}).json()["id"]
        http.post(f"/v1/videos/{slow}/cancel")
        _wait(http, slow, {"cancelled"})
        cancelled = http.get(f"/v1/videos/{slow}/logs").json()["data"]
        assert cancelled[-1]["level"] == "warning" and cancelled[-1]["message"] == "cancelled"


def test_queue_view_lists_mine_with_positions_and_counts_others(served: tuple[Service, Any]) -> None:
    service, gw = served
    other = {"Authorization": f"Bearer {create_api_key(gw.env, f'queue-other-{time.monotonic_ns()}')}"}
    body = {"model": "tiny-ti2v", "prompt": "queue", "num_frames": 5, "num_inference_steps": 30}
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=30) as http:
        mine = [http.post("/v1/videos", json=body).json()["id"] for _ in range(2)]
        theirs = http.post("/v1/videos", json=body, headers=other).json()["id"]
        mine.append(http.post("/v1/videos", json=body).json()["id"])
        try:
            view = http.get("/v1/queue")
            assert view.status_code == 200, view.text
            (tiny,) = [m for m in view.json()["data"] if m["model"] == "tiny-ti2v"]
            listed = {j["id"]: j for j in tiny["jobs"]}
            assert theirs not in listed and set(mine) <= set(listed)  # others only counted
            assert tiny["running"] + tiny["waiting"] >= 4
            waiting = [listed[j]["queue_position"] for j in mine if listed[j]["status"] == "queued"]
            assert waiting == sorted(waiting) and len(set(waiting)) == len(waiting)
            if listed[mine[-1]]["status"] == "queued":  # someone else's job is ahead of my last one
                assert listed[mine[-1]]["queue_position"] >= 2
            theirs_view = http.get("/v1/queue", headers=other).json()["data"]
            assert [j["id"] for m in theirs_view for j in m["jobs"]] == [theirs]
        finally:
            for vid in mine:
                http.post(f"/v1/videos/{vid}/cancel")
            http.post(f"/v1/videos/{theirs}/cancel", headers=other)
