"""Extensions, edits and remixes over real HTTP with the real worker."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import httpx
import numpy as np
import pytest

from tests.service_support import wait_status

pytestmark = pytest.mark.integration

FAST = {"num_inference_steps": 2}


def frames_of(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def mp4(n: int, w: int, h: int, fps: int = 24, codec: str = "libx264", fmt: str = "mp4") -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.time_base = Fraction(1, fps)
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[:, : (i * 3) % w] = (200, 40, 40)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return buf.getvalue()


def done(client: httpx.Client, r: httpx.Response) -> dict:
    assert r.status_code == 202, r.text
    out = wait_status(client, r.json()["id"], {"completed", "failed"}, timeout=120)
    assert out["status"] == "completed", out
    return out


@pytest.fixture(scope="module")
def source(gateway) -> dict:  # type: ignore[no-untyped-def]
    client = httpx.Client(base_url=gateway.url, timeout=30)
    body = {"prompt": "a red fox", "num_frames": 9, "seed": 3, **FAST}
    src = done(client, client.post("/v1/videos", json=body))
    src["frames"] = frames_of(client.get(f"/v1/videos/{src['id']}/content").content)
    return src


def test_extend_by_json_reference_reproduces_the_source(client: httpx.Client, source: dict) -> None:
    r = client.post(
        "/v1/videos/extensions",
        json={"prompt": "it runs", "seconds": "1", "video": {"id": source["id"]}, **FAST},
    )
    job = r.json()
    fps = source["parameters"]["fps"]
    assert job["parameters"]["num_frames"] == 9 + fps and job["parameters"]["source_frames"] == 9
    assert job["parameters"]["segments"] == 2 and job["total_steps"] == 4
    assert job["operation"] == "extend" and job["source_video_id"] == source["id"]
    out = done(client, r)
    v = frames_of(client.get(f"/v1/videos/{out['id']}/content").content)
    assert v.shape[0] == 9 + fps
    diff = np.abs(v[:9].astype(np.float32) - source["frames"].astype(np.float32)).mean()
    other = np.abs(v[9:18].astype(np.float32) - source["frames"].astype(np.float32)).mean()
    assert diff < 6.0 and diff < 0.3 * other, (diff, other)  # the source frames, re-encoded once more


def test_extend_by_multipart_reference_and_by_upload(client: httpx.Client, source: dict) -> None:
    r = client.post(
        "/v1/videos/extensions",
        data={"prompt": "more", "seconds": "0.5", "video[id]": source["id"], "num_inference_steps": "2"},
    )
    assert done(client, r)["parameters"]["num_frames"] == 9 + 12
    up = mp4(12, 48, 40)
    r = client.post(
        "/v1/videos/extensions",
        data={"prompt": "more", "seconds": "0.5", "size": "32x32", "num_inference_steps": "2"},
        files={"video": ("clip.mp4", up, "video/mp4")},
    )
    job = done(client, r)
    assert job["source_video_id"] is None and job["parameters"]["source_frames"] == 12
    v = frames_of(client.get(f"/v1/videos/{job['id']}/content").content)
    assert v.shape == (24, 32, 32, 3)


@pytest.mark.parametrize(
    ("files", "status", "reason"),
    [
        ({"video": ("x.mp4", b"\x89PNG\r\n\x1a\nnot a video", "video/mp4")}, 400, "png_pipe is not allowed"),
        ({"video": ("x.mp4", bytes(range(256)) * 8, "video/mp4")}, 400, "not a recognised video"),
        ({"video": ("x.mkv", b"", "video/x-matroska")}, 400, "empty"),
    ],
)
def test_bad_uploads_are_refused(client: httpx.Client, files: dict, status: int, reason: str) -> None:
    r = client.post("/v1/videos/extensions", data={"prompt": "x", "seconds": "1"}, files=files)
    assert r.status_code == status and reason in r.text, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_bad_sources_are_refused(client: httpx.Client, gateway_factory) -> None:
    r = client.post(
        "/v1/videos/extensions", json={"prompt": "x", "seconds": "1", "video": {"id": "video_nope"}}
    )
    assert r.status_code == 404
    r = client.post("/v1/videos/extensions", json={"prompt": "x", "seconds": "1"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "video"
    slow = client.post("/v1/videos", json={"prompt": "slow", "num_inference_steps": 40}).json()["id"]
    r = client.post("/v1/videos/edits", json={"prompt": "x", "video": {"id": slow}})
    assert r.status_code == 409 and "completed" in r.text
    client.post(f"/v1/videos/{slow}/cancel")
    wait_status(client, slow, {"cancelled", "completed"})
    long_upload = mp4(24 * 70, 16, 16)  # 70 s > WANSERVE_MAX_VIDEO_SECONDS
    r = client.post(
        "/v1/videos/edits", data={"prompt": "x"}, files={"video": ("l.mp4", long_upload, "video/mp4")}
    )
    assert r.status_code == 400 and "longer than" in r.text
    webm = mp4(5, 32, 32, codec="libvpx", fmt="webm")
    r = client.post(
        "/v1/videos/edits",
        data={"prompt": "x", "strength": "2"},
        files={"video": ("w.webm", webm, "video/webm")},
    )
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "strength"


def test_edit_noises_to_strength_and_denoises(client: httpx.Client, source: dict) -> None:
    r = client.post(
        "/v1/videos/edits",
        json={
            "prompt": "a blue fox",
            "strength": 0.5,
            "video": {"id": source["id"]},
            "num_inference_steps": 4,
        },
    )
    job = r.json()
    assert job["parameters"]["strength"] == 0.5 and job["total_steps"] == 2 and job["operation"] == "edit"
    out = done(client, r)
    assert out["step"] == 2
    v = frames_of(client.get(f"/v1/videos/{out['id']}/content").content)
    assert v.shape == source["frames"].shape and not np.array_equal(v, source["frames"])


def test_remix_keeps_the_parameters_with_a_new_prompt(client: httpx.Client, source: dict) -> None:
    r = client.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "a red fox, at night"})
    out = done(client, r)
    assert out["remixed_from_video_id"] == source["id"] and out["operation"] == "remix"
    assert out["prompt"] == "a red fox, at night"
    for k in ("width", "height", "num_frames", "seed", "num_inference_steps", "fps"):
        assert out["parameters"][k] == source["parameters"][k], k
    assert client.get(f"/v1/videos/{source['id']}").json()["remixed_from_video_id"] is None
    assert client.post("/v1/videos/video_nope/remix", json={"prompt": "x"}).status_code == 404


def test_interpolated_fps_and_upscaled_size(client: httpx.Client) -> None:
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert "48x48" in models["tiny-ti2v"]["upscale_sizes"] and "64x64" in models["tiny-ti2v"]["sizes"]
    r = client.post(
        "/v1/videos", json={"prompt": "a fox", "num_frames": 9, "fps": 48, "size": "48x48", **FAST}
    )
    job = r.json()
    p = job["parameters"]
    assert (p["fps"], p["output_fps"], p["interpolation"]) == (24, 48, "minterpolate")
    assert (p["width"], p["height"], p["output_width"], p["output_height"], p["upscaler"]) == (
        32,
        32,
        48,
        48,
        "lanczos",
    )
    assert job["size"] == "48x48" and float(job["seconds"]) == pytest.approx(17 / 48, abs=5e-3)
    done(client, r)
    data = client.get(f"/v1/videos/{job['id']}/content").content
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        v = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(s)])
        rate = float(s.average_rate)
    assert v.shape == (17, 48, 48, 3) and rate == 48.0
    diffs = np.abs(np.diff(v.astype(np.int16), axis=0)).reshape(16, -1).mean(axis=1)
    assert (diffs > 0.5).all(), diffs  # no duplicated frames
    r = client.post("/v1/videos", json={"prompt": "x", "size": "66x64"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "size"


def test_upscale_with_a_refine_pass(client: httpx.Client) -> None:
    body = {"prompt": "a fox", "num_frames": 5, "size": "128x128", "upscale_refine": 0.3, **FAST}
    r = client.post("/v1/videos", json=body)
    p = r.json()["parameters"]
    assert (p["width"], p["output_width"], p["refine_strength"]) == (64, 128, 0.3)
    out = done(client, r)
    assert frames_of(client.get(f"/v1/videos/{out['id']}/content").content).shape == (5, 128, 128, 3)


def test_remix_keeps_the_input_image_and_idempotency_covers_the_source(
    client: httpx.Client, source: dict
) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(buf, format="PNG")
    r = client.post(
        "/v1/videos",
        data={"prompt": "green", "num_frames": "5", **{k: str(v) for k, v in FAST.items()}},
        files={"input_reference": ("g.png", buf.getvalue(), "image/png")},
    )
    src = done(client, r)
    remix = done(client, client.post(f"/v1/videos/{src['id']}/remix", json={"prompt": "green, at night"}))
    assert remix["parameters"]["has_image"] is True and remix["remixed_from_video_id"] == src["id"]
    # one Idempotency-Key, two different sources: not a replay, a 409/422 mismatch
    h = {"Idempotency-Key": f"ext-{src['id']}"}
    a = client.post(
        "/v1/videos/extensions", json={"prompt": "x", "seconds": "0.2", "video": {"id": src["id"]}}, headers=h
    )
    assert a.status_code == 202, a.text
    b = client.post(
        "/v1/videos/extensions",
        json={"prompt": "x", "seconds": "0.2", "video": {"id": source["id"]}},
        headers=h,
    )
    assert b.status_code != 202 or b.json()["id"] != a.json()["id"], b.text
    wait_status(client, a.json()["id"], {"completed", "failed"})
