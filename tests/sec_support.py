"""Test helpers for the security/delivery tests: a private redis-server, a moto S3 server, an S3
endpoint nobody listens on, the ``wanserve keys`` CLI, and a local webhook receiver. Imported by
tests/unit/test_sec_*.py and tests/integration/test_sec_*.py (fixtures are defined there from these
helpers) and by the ecosystem tests for API keys."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.service_support import REPO, RedisServer, free_port

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server on a free port (the spine's `RedisServer`), so tests may FLUSHDB it."""
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.close()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 in server mode (real HTTP) on a free port; yields the endpoint URL.

    Fake AWS credentials are set in the environment (unless already there) for boto3."""
    from moto.server import ThreadedMotoServer

    for k, v in FAKE_AWS.items():
        os.environ.setdefault(k, v)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def dead_s3_config(**overrides: Any) -> Any:
    """An `S3Config` for an endpoint nobody listens on, failing fast (2 attempts, short timeouts)."""
    from app.core.storage_s3 import S3Config

    fields: dict[str, Any] = {
        "bucket": "b",
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "region": "us-east-1",
        "path_style": True,
        "upload_attempts": 2,
        "retry_backoff_s": 0.05,
        "connect_timeout_s": 0.5,
    }
    return S3Config(**(fields | overrides))


def wanserve_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``wanserve ARGS...`` (as ``python -m app.cli.main``) with ``env``; raises if it fails."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def create_api_key(env: dict[str, str], name: str) -> str:
    """A new API key from ``wanserve keys create --name NAME`` (the token, ``wsk_…``)."""
    return wanserve_cli(env, "keys", "create", "--name", name).stdout.strip()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A local HTTP receiver. ``responder(n, received) -> (status, headers, body)`` per request."""

    url: str
    requests: list[Received] = field(default_factory=list)
    responder: Callable[[int, Received], tuple[int, dict[str, str], bytes]] = lambda n, r: (200, {}, b"ok")
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.requests) >= n, timeout=timeout)
            return list(self.requests)

    def json_bodies(self) -> list[Any]:
        return [json.loads(r.body) for r in self.requests]


@contextlib.contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    port = free_port()
    rec = Receiver(url=f"http://127.0.0.1:{port}/hook")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            item = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
            with rec.cond:
                rec.requests.append(item)
                n = len(rec.requests)
                rec.cond.notify_all()
            status, headers, out = rec.responder(n, item)
            with contextlib.suppress(OSError):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        do_POST = _handle  # noqa: N815
        do_GET = _handle  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
