"""A private wanserve stack for the reliability tests: its own redis-server, a gateway
with a fast reaper, and workers started and killed at will — so killing, stopping and restarting
never disturbs the session fixtures other tests share.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.service_support import RedisServer, ServiceProcess, start_gateway, start_worker, wait_for

# fast detection for tests: leases renewed every 0.5 s (heartbeat), expired after 2 s, reaped every 0.5 s
LEASE_TTL_S = 2.0
REAPER_INTERVAL_S = 0.5
FAST = {"job_lease_ttl_s": LEASE_TTL_S, "reaper_interval_s": REAPER_INTERVAL_S, "log_format": "json"}


class AofRedis(RedisServer):
    """A redis-server with append-only persistence (like docker-compose.yml's), restartable in place."""

    def start(self) -> AofRedis:
        cmd = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        cmd += ["--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        wait_for(lambda: self.client().ping(), 10, f"redis-server on {self.port}")
        return self


@dataclass
class Stack:
    redis: RedisServer
    data_dir: Path
    gateway: ServiceProcess
    client: httpx.Client
    workers: list[ServiceProcess] = field(default_factory=list)

    def worker(self, model: str = "tiny-ti2v", **settings: Any) -> ServiceProcess:
        sp = start_worker(self.redis.url, self.data_dir, model=model, timeout=180, **{**FAST, **settings})
        self.workers.append(sp)
        return sp

    def submit(self, **body: Any) -> str:
        r = self.client.post("/v1/videos", json={"prompt": "reliability", **body})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def get(self, vid: str) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(f"/v1/videos/{vid}").json()
        return body

    def wait(self, vid: str, statuses: set[str], timeout: float = 90) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            body = self.get(vid)
            return body if body.get("status") in statuses else None

        result: dict[str, Any] = wait_for(check, timeout, f"{vid} in {statuses}", interval=0.1)
        return result

    def wait_running_on(self, vid: str, worker: ServiceProcess, step: int = 2, timeout: float = 90) -> None:
        def check() -> bool:
            b = self.get(vid)
            assert b["status"] not in ("completed", "failed", "cancelled"), b
            return b["status"] == "in_progress" and b["worker_id"] == worker.worker_id and b["step"] >= step

        wait_for(check, timeout, f"{vid} at step {step} on {worker.worker_id}", interval=0.05)

    def close(self) -> None:
        self.client.close()
        for sp in self.workers:
            with contextlib.suppress(Exception):
                sp.kill()
        with contextlib.suppress(Exception):
            self.gateway.stop()
        self.redis.close()


def open_stack(tmp: Path, *, redis: RedisServer | None = None, **gateway_settings: Any) -> Stack:
    server = (redis or RedisServer()).start()
    gw = start_gateway(server.url, tmp, poll_after_ms=100, **{**FAST, **gateway_settings})
    assert gw.url is not None
    return Stack(server, tmp, gw, httpx.Client(base_url=gw.url, timeout=30))


def sigkill_group(sp: ServiceProcess) -> None:
    """Power-loss style: the Celery parent and its pool child die at once, nothing runs after."""
    sp.kill()


def exit_code(sp: ServiceProcess, timeout: float) -> int:
    return sp.proc.wait(timeout=timeout)


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def sigterm(sp: ServiceProcess) -> None:
    os.kill(sp.pid, signal.SIGTERM)


def now() -> float:
    return time.monotonic()
