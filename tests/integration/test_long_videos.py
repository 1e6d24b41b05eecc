"""Long videos through the real service: the demo model, segments chained, seams measured, a
worker killed mid-video resumes from its last stored segment."""

from __future__ import annotations

import io

import av
import httpx
import numpy as np
import pytest

from tests.service_support import wait_for, wait_status

pytestmark = pytest.mark.integration

MODEL = "wanserve-demo"  # its own queue: the session worker (tiny-ti2v) is not involved
BODY = {
    "prompt": "a red ball rolls right",
    "model": MODEL,
    "seconds": "10",
    "num_inference_steps": 4,
    "seed": 5,
}
SEGMENTS = 6  # 10 s at 8 fps = 81 frames; segments of 17 frames sharing 4


def frames_of(data: bytes) -> tuple[np.ndarray, float]:
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(s)])
        return frames, float(s.average_rate)


def seam_ratio(v: np.ndarray, count: int, seg: int = 17, overlap: int = 4) -> float:
    """Largest frame-to-frame change around a junction over the median change in the video."""
    d = np.abs(np.diff(v.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    starts = [seg + k * (seg - overlap) for k in range(count - 1)]
    around = max(d[s - overlap - 1 : s + 1].max() for s in starts)
    return float(around / max(np.median(d), 1e-3))


_uninterrupted: dict[str, np.ndarray] = {}


def test_long_video_of_six_segments(client: httpx.Client, worker_factory) -> None:
    worker_factory(MODEL)
    r = client.post("/v1/videos", json=BODY)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["parameters"]["num_frames"] == 81 and job["parameters"]["segments"] == SEGMENTS
    assert job["total_steps"] == 4 * SEGMENTS and job["seconds"] == "10.12"  # 81 frames at 8 fps
    done = wait_status(client, job["id"], {"completed", "failed"}, timeout=240)
    assert done["status"] == "completed", done
    assert done["step"] == done["total_steps"] == 4 * SEGMENTS and done["progress"] == 100
    assert {f"segment_{k}" for k in range(SEGMENTS)} <= set(done["timings"])
    assert done["timings"]["segments_resumed"] == 0
    content = client.get(f"/v1/videos/{job['id']}/content").content
    v, fps = frames_of(content)
    assert v.shape == (81, 32, 32, 3) and fps == 8.0
    assert seam_ratio(v, SEGMENTS) < 4.0
    _uninterrupted["frames"] = v


def test_long_video_refusals(client: httpx.Client) -> None:
    r = client.post("/v1/videos", json={"prompt": "x", "seconds": "100"})  # tiny-ti2v, over the bound
    assert r.status_code == 400 and "WANSERVE_MAX_VIDEO_SECONDS" in r.text


def test_killed_worker_resumes_from_the_last_stored_segment(
    client: httpx.Client, worker_factory, service_data_dir
) -> None:
    first = worker_factory(MODEL, debug_step_delay_s=0.15, job_lease_ttl_s=4, max_attempts=3)
    vid = client.post("/v1/videos", json=BODY).json()["id"]
    seg_dir = service_data_dir / "objects" / "videos" / vid / "segments"
    wait_for(lambda: client.get(f"/v1/videos/{vid}").json()["step"] >= 10, 120, "segment 2 under way")
    first.kill()  # SIGKILL the worker's process group: power-loss style
    stored = sorted(p.name for p in seg_dir.glob("*.npy"))
    assert stored[:2] == ["0000.npy", "0001.npy"], stored
    worker_factory(MODEL)
    done = wait_status(client, vid, {"completed", "failed"}, timeout=240)
    assert done["status"] == "completed" and done["attempts"] == 2, done
    assert done["timings"]["segments_resumed"] >= 2
    resumed = {f"segment_{k}" for k in range(int(done["timings"]["segments_resumed"]), SEGMENTS)}
    assert resumed <= set(done["timings"])
    assert not seg_dir.exists()
    v, _ = frames_of(client.get(f"/v1/videos/{vid}/content").content)
    assert v.shape == (81, 32, 32, 3)
    if "frames" in _uninterrupted:  # the same seed gives the same video, resumed or not (up to MP4 coding)
        diff = np.abs(v.astype(np.float32) - _uninterrupted["frames"].astype(np.float32)).mean()
        per = np.abs(v.astype(np.float32) - _uninterrupted["frames"].astype(np.float32)).mean(axis=(1, 2, 3))
        assert diff < 2.0, (diff, np.round(per, 2).tolist(), done["timings"])


def test_cancel_stops_inside_a_later_segment(client: httpx.Client, worker_factory, service_data_dir) -> None:
    worker_factory(MODEL, debug_step_delay_s=0.1)
    vid = client.post("/v1/videos", json=BODY).json()["id"]
    wait_for(lambda: client.get(f"/v1/videos/{vid}").json()["step"] >= 6, 120, "segment 1 under way")
    assert client.post(f"/v1/videos/{vid}/cancel").status_code == 202
    out = wait_status(client, vid, {"cancelled", "completed", "failed"}, timeout=60)
    assert out["status"] == "cancelled" and 6 <= out["step"] < out["total_steps"] - 4, out
    assert not (service_data_dir / "objects" / "videos" / vid / "segments").exists()  # nothing to resume
