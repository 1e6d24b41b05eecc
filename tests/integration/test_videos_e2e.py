"""End to end over real HTTP: submit → completed → download → decode; content route; delete."""

from __future__ import annotations

import io
import json
import time

import av
import httpx
import pytest
from PIL import Image

from tests.service_support import wait_status

pytestmark = pytest.mark.integration


def decode(data: bytes) -> tuple[int, int, int, float, str]:
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        return len(frames), frames[0].width, frames[0].height, float(s.average_rate), frames[0].format.name


def test_submit_complete_download_decode(client: httpx.Client) -> None:
    r = client.post(
        "/v1/videos",
        json={"prompt": "a red fox", "size": "64x32", "num_frames": 9, "num_inference_steps": 2, "seed": 7},
    )
    assert r.status_code == 202, r.text
    assert r.headers["openai-poll-after-ms"] == "200"
    job = r.json()
    assert job["object"] == "video" and job["status"] in ("queued", "in_progress")
    assert job["size"] == "64x32" and job["seed"] == 7 and job["parameters"]["num_frames"] == 9
    done = wait_status(client, job["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["progress"] == 100 and done["step"] == 2 and done["total_steps"] == 2
    assert done["completed_at"] >= done["created_at"] and done["expires_at"] > done["completed_at"]
    assert {"queue_wait", "denoising", "decoding", "encoding", "upload"} <= set(done["timings"])
    assert done["attempts"] == 1 and done["worker_id"]
    fps = done["parameters"]["fps"]
    assert done["seconds"] == f"{round(9 / fps, 2):g}"

    video = client.get(f"/v1/videos/{job['id']}/content")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert int(video.headers["content-length"]) == len(video.content)
    assert decode(video.content) == (9, 64, 32, float(fps), "yuv420p")
    assert video.content[4:8] == b"ftyp" and video.content.find(b"moov") < video.content.find(b"mdat")

    thumb = client.get(f"/v1/videos/{job['id']}/content", params={"variant": "thumbnail"})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(thumb.content)).size == (64, 32)

    # the signed URL in the object serves the same bytes
    signed = httpx.get(done["urls"]["video"])
    assert signed.status_code == 200 and signed.content == video.content
    # Range support
    part = client.get(f"/v1/videos/{job['id']}/content", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == video.content[:100]
    assert part.headers["content-range"].startswith("bytes 0-99/")


def test_multipart_with_image_and_flattened_fields(client: httpx.Client) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, format="PNG")
    r = client.post(
        "/v1/videos",
        data={
            "prompt": "a red square",
            "seconds": "0.2",
            "num_inference_steps": "2",
            "metadata[team]": "qa",
            "metadata[run]": "7",
            "guidance_scale": "4.5",
        },
        files={"input_reference": ("ref.png", buf.getvalue(), "image/png")},
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["metadata"] == {"team": "qa", "run": "7"}
    assert job["parameters"]["has_image"] is True and job["parameters"]["guidance_scale"] == [4.5]
    fps = job["parameters"]["fps"]
    assert job["parameters"]["num_frames"] == 4 * round(0.2 * fps / 4) + 1
    assert wait_status(client, job["id"], {"completed", "failed"})["status"] == "completed"


def test_content_before_completion_is_409_and_unknown_is_404(client: httpx.Client) -> None:
    r = client.post("/v1/videos", json={"prompt": "slow", "num_inference_steps": 30})
    vid = r.json()["id"]
    c = client.get(f"/v1/videos/{vid}/content")
    assert c.status_code == 409 and c.headers["content-type"] == "application/problem+json"
    client.post(f"/v1/videos/{vid}/cancel")
    wait_status(client, vid, {"cancelled", "completed"})
    for path in ("", "/content", "/events", "/cancel"):
        method = client.post if path == "/cancel" else client.get
        resp = method(f"/v1/videos/video_nope{path}")
        assert resp.status_code == 404, path
        assert resp.json()["status"] == 404


def test_delete_removes_record_and_assets(client: httpx.Client, service_data_dir) -> None:
    vid = client.post("/v1/videos", json={"prompt": "bye", "num_inference_steps": 1}).json()["id"]
    wait_status(client, vid, {"completed"})
    url = client.get(f"/v1/videos/{vid}").json()["urls"]["video"]
    assert (service_data_dir / "objects" / "videos" / vid / "video.mp4").exists()
    d = client.delete(f"/v1/videos/{vid}")
    assert d.status_code == 200 and d.json() == {"id": vid, "object": "video.deleted", "deleted": True}
    assert client.get(f"/v1/videos/{vid}").status_code == 404
    assert not (service_data_dir / "objects" / "videos" / vid).exists()
    assert httpx.get(url).status_code == 404
    ids = [v["id"] for v in client.get("/v1/videos", params={"limit": 100}).json()["data"]]
    assert vid not in ids


def test_models_and_health(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    m = {d["id"]: d for d in models["data"]}["tiny-ti2v"]
    assert m["object"] == "model" and m["ready_workers"] >= 1 and "32x32" in m["sizes"]
    assert m["num_frames"]["min"] <= m["num_frames"]["default"] <= m["num_frames"]["max"]
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models"]["tiny-ti2v"]["ready"] >= 1


def test_events_stream_in_order_and_resume(client: httpx.Client) -> None:
    vid = client.post("/v1/videos", json={"prompt": "sse", "num_inference_steps": 5}).json()["id"]
    events = read_sse(client, f"/v1/videos/{vid}/events")
    types = [e["event"] for e in events]
    assert types[0] == "video.queued" and types[1] == "video.started" and types[-1] == "video.completed"
    steps = [json.loads(e["data"])["step"] for e in events if e["event"] == "video.progress"]
    assert steps == [1, 2, 3, 4, 5]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    # resume after the third event: exactly the rest, no gap, no repeat
    rest = read_sse(client, f"/v1/videos/{vid}/events", headers={"Last-Event-ID": ids[2]})
    assert [e["id"] for e in rest] == ids[3:]


def test_events_resume_while_running(client: httpx.Client) -> None:
    vid = client.post("/v1/videos", json={"prompt": "live", "num_inference_steps": 12}).json()["id"]
    first: list[dict[str, str]] = []
    with client.stream("GET", f"/v1/videos/{vid}/events") as resp:
        for ev in iter_sse(resp.iter_lines()):
            first.append(ev)
            if ev["event"] == "video.progress" and json.loads(ev["data"])["step"] == 3:
                break  # client disconnects mid-job
    rest = read_sse(client, f"/v1/videos/{vid}/events", headers={"Last-Event-ID": first[-1]["id"]})
    steps = [json.loads(e["data"])["step"] for e in first + rest if e["event"] == "video.progress"]
    assert steps == list(range(1, 13))
    assert rest[-1]["event"] == "video.completed"


def iter_sse(lines):
    ev: dict[str, str] = {}
    for line in lines:
        if not line:
            if "event" in ev:
                yield ev
            ev = {}
        elif not line.startswith(":") and ":" in line:
            k, v = line.split(":", 1)
            ev[k] = v.lstrip()


def read_sse(client: httpx.Client, url: str, headers=None, timeout: float = 60) -> list[dict[str, str]]:
    out = []
    t0 = time.monotonic()
    with client.stream("GET", url, headers=headers, timeout=timeout) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        for ev in iter_sse(resp.iter_lines()):
            out.append(ev)
            assert time.monotonic() - t0 < timeout
    return out


def test_delete_running_job_stops_it_and_leaves_nothing(client: httpx.Client, service_data_dir) -> None:
    from tests.service_support import wait_for

    vid = client.post("/v1/videos", json={"prompt": "doomed", "num_inference_steps": 50}).json()["id"]
    wait_for(lambda: client.get(f"/v1/videos/{vid}").json()["step"] >= 2, 60, "running")
    assert client.delete(f"/v1/videos/{vid}").json()["deleted"] is True
    assert client.get(f"/v1/videos/{vid}").status_code == 404
    nxt = client.post("/v1/videos", json={"prompt": "after", "num_inference_steps": 1}).json()["id"]
    assert wait_status(client, nxt, {"completed", "failed"}, timeout=30)["status"] == "completed"
    assert not (service_data_dir / "objects" / "videos" / vid).exists()
    assert client.get(f"/v1/videos/{vid}").status_code == 404  # the worker did not resurrect it
