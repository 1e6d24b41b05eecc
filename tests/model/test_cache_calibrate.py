"""The calibration command: writes TeaCache coefficients / MagCache ratios / thresholds beside the weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model import load_pipeline
from model.cache import CACHE_TYPES, CALIBRATION_FILE, CacheError, load_calibration, resolve_cache
from model.cache_calibrate import main


def test_calibrate_command_writes_a_usable_record(tmp_path):
    with pytest.raises(CacheError):  # before: the tiny preset has no TeaCache / MagCache numbers
        resolve_cache({"type": "magcache"}, "tiny-ti2v", load_calibration(tmp_path))
    assert (
        main(["--model", "tiny-ti2v", "--out", str(tmp_path), "--prompt", "a fox", "--prompt", "a cat"]) == 0
    )
    record = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    assert record["model_id"] == "tiny-ti2v" and record["num_steps"] == 4
    assert len(record["teacache"]["coefficients"]) == 5
    assert set(record["magcache"]["ratios"]) == {"cond", "uncond"}
    assert all(len(v) == 4 and v[0] == 1.0 for v in record["magcache"]["ratios"].values())
    for kind in CACHE_TYPES:
        assert 0 < record[kind]["threshold"] <= 2

    pipe = load_pipeline("tiny-ti2v")
    pipe.cache_calibration = load_calibration(tmp_path)
    for kind in ("teacache", "magcache"):
        spec = resolve_cache({"type": kind}, "tiny-ti2v", pipe.cache_calibration)
        assert spec is not None and spec.threshold == record[kind]["threshold"]
        pipe.generate("a fox", num_steps=6, cache={"type": kind})  # other step counts resample the ratios
        assert pipe.last_cache.steps_computed >= 2


def test_demo_weights_ship_their_calibration():
    pipe = load_pipeline("wanserve-demo")
    assert pipe.cache_calibration is not None and pipe.cache_calibration["model_id"] == "wanserve-demo"
    assert pipe.cache_calibration["num_steps"] == pipe.preset.default_num_steps
    for kind in CACHE_TYPES:
        assert resolve_cache({"type": kind}, "wanserve-demo", pipe.cache_calibration) is not None


def test_main_refuses_a_preset_without_a_folder():
    with pytest.raises(SystemExit):
        main(["--model", "tiny-ti2v", "--prompt", "a fox"])


def test_wanserve_calibrate_verb_end_to_end_on_the_demo_model(tmp_path):
    """The real console verb: a child process computes the demo's calibration into a temp folder."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    argv = [sys.executable, "-m", "app.cli.main", "calibrate", "--model", "wanserve-demo"]
    argv += ["--out", str(tmp_path), "--prompt", "a red circle moves right on a black background"]
    argv += ["--steps", "4", "--target-skip", "0.2"]  # a low target ends the threshold search early
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    path = tmp_path / CALIBRATION_FILE
    assert f"wrote {path}" in done.stdout  # it says where
    record = json.loads(path.read_text())
    assert record["model_id"] == "wanserve-demo" and record["num_steps"] == 4
    assert all(len(v) == 4 for v in record["magcache"]["ratios"].values())
    for kind in CACHE_TYPES:
        assert resolve_cache({"type": kind}, "wanserve-demo", record) is not None
    # the shipped calibration beside the weights was not touched
    shipped = load_pipeline("wanserve-demo").cache_calibration
    assert shipped is not None and shipped["num_steps"] == 20


def test_wanserve_calibrate_verb_reports_a_failure(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    argv = [sys.executable, "-m", "app.cli.main", "calibrate", "--model", "tiny-ti2v"]  # no folder, no --out
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "has no weights folder" in done.stderr
