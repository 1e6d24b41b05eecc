"""The learned frame interpolator through the real service: a demo-model worker started with
WANSERVE_INTERPOLATOR_WEIGHTS (a RIFE v4.6 checkpoint this test writes, random weights)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import torch

from model.interpolator import IFNet
from tests.service_support import service_env, wait_status

pytestmark = pytest.mark.integration

MODEL = "wanserve-demo"  # 8 fps; its own queue
BODY = {"prompt": "a red circle moves slowly to the left", "model": MODEL, "num_frames": 9}
FAST = {"num_inference_steps": 2, "seed": 4}


def rife_checkpoint(path: Path) -> Path:
    """In the official file's layout (a DataParallel state dict, every key ``module.``-prefixed).

    Random weights carry no notion of time: an untrained IFNet blends its two frames 50/50 whatever
    ``t`` is, so two in-between frames of one pair would come out alike. One hand-set path makes
    the blend follow ``t`` as a trained net's does: in block3 the timestep input (channel 6) is
    carried through unchanged in feature 0, and the mask logit reads ``5 - 10 t`` from it.
    """
    torch.manual_seed(11)
    sd = IFNet().state_dict()
    with torch.no_grad():
        c0, c1 = sd["block3.conv0.0.0.weight"], sd["block3.conv0.1.0.weight"]
        c0[0].zero_(), c1[0].zero_()
        c0[0, 6, 1, 1] = c1[0, 0, 1, 1] = 1.0  # centre taps: padding never reaches them
        sd["block3.conv0.0.0.bias"][0] = sd["block3.conv0.1.0.bias"][0] = 0.0
        for j in range(8):  # residual convs leave feature 0 alone
            sd[f"block3.convblock.{j}.conv.weight"][0].zero_()
            sd[f"block3.convblock.{j}.conv.bias"][0] = 0.0
        last = sd["block3.lastconv.0.weight"]  # [in, out, 4, 4]; out 16..19 shuffle into the mask
        last[:, 16:20].zero_()
        last[0, 16:20] = -10.0 / 4  # an inner output pixel sums 4 taps of a stride-2 kernel-4 conv
        sd["block3.lastconv.0.bias"][16:20] = 5.0
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)
    return path


def video(client: httpx.Client, body: dict) -> tuple[dict, np.ndarray, float]:
    r = client.post("/v1/videos", json=body)
    assert r.status_code == 202, r.text
    out = wait_status(client, r.json()["id"], {"completed", "failed"}, timeout=180)
    assert out["status"] == "completed", out
    with av.open(io.BytesIO(client.get(f"/v1/videos/{out['id']}/content").content)) as c:
        s = c.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(s)])
        return out, frames, float(s.average_rate)


def test_fps_above_the_model_rate_through_rife(client: httpx.Client, worker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    worker_factory(MODEL, interpolator_weights=rife_checkpoint(tmp_path / "flownet.pkl"))
    job, v, rate = video(client, {**BODY, **FAST, "fps": 20})  # 2.5x: fractional timesteps
    p = job["parameters"]
    assert (p["fps"], p["output_fps"], p["interpolation"]) == (8, 20, "rife")
    assert {m["id"]: m for m in client.get("/v1/models").json()["data"]}[MODEL]["interpolation"] == "rife"
    assert v.shape == ((9 - 1) * 20 // 8 + 1, 32, 32, 3) and rate == 20.0
    diffs = np.abs(np.diff(v.astype(np.int16), axis=0)).reshape(len(v) - 1, -1).mean(axis=1)
    assert (diffs > 0.5).all(), diffs  # no duplicated frames
    _, native, native_rate = video(client, {**BODY, **FAST})  # same seed at the model's own rate
    assert native_rate == 8.0 and len(native) == 9
    for j in range(0, 21, 5):  # whole source positions: the generated frame itself (re-encoded)
        err = [np.abs(v[j].astype(np.float32) - f).mean() for f in native]
        # codec noise of two separate encodes grows with the clip's contrast (4.4 on the demo's
        # sharpest clips); the neighbouring source frames sit at 12 and more
        assert int(np.argmin(err)) == j * 8 // 20 and min(err) < 6.0, (j, err)


def test_a_bad_weights_file_stops_the_worker_at_start(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "flownet.pkl").write_bytes(b"not a checkpoint")
    env = service_env(redis_url, tmp_path, model=MODEL, interpolator_weights=tmp_path / "flownet.pkl")
    run = subprocess.run([sys.executable, "-m", "worker"], env=env, capture_output=True, timeout=120)
    assert run.returncode == 1
    assert "WANSERVE_INTERPOLATOR_WEIGHTS: interpolator weights" in run.stderr.decode()
    assert "unreadable" in run.stderr.decode()
