"""`wanserve serve`: private redis-server + worker + gateway from one command; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.service_support import REPO, free_port, service_env, wait_for, wait_status

pytestmark = pytest.mark.integration


def test_serve_runs_everything_and_stops_cleanly(tmp_path) -> None:
    rport, port = free_port(), free_port()
    env = service_env(f"redis://127.0.0.1:{rport}/0", tmp_path, port=port, host="127.0.0.1", model=None)
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "serve"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{base}/readyz", timeout=1).status_code == 200, 120, "serve ready", 0.3)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("redis-server" in " ".join(c.cmdline()) for c in children)
        with httpx.Client(base_url=base, timeout=30) as c:
            vid = c.post("/v1/videos", json={"prompt": "serve", "num_inference_steps": 2}).json()["id"]
            assert wait_status(c, vid, {"completed", "failed"})["status"] == "completed"
            assert c.get(f"/v1/videos/{vid}/content").content[4:8] == b"ftyp"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        time.sleep(0.5)
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        for c in psutil.Process(os.getpid()).children(recursive=True):
            if "redis-server" in " ".join(c.cmdline()) and str(rport) in " ".join(c.cmdline()):
                c.kill()
