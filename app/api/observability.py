"""Gateway observability: request ids in every answer and log line (the ``/metrics`` and admin
routes are in `app.api.routes.admin`).

- `RequestIdMiddleware`: every response carries ``X-Request-ID`` (the caller's, when it is a sane
  token, else a new one); the id and the job id of ``/v1/videos/{id}`` routes are in every log
  line of the request (`app.core.logjson`).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logjson import job_id_var, request_id_var

HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_JOB_PATH = re.compile(r"^/v1/videos/(video_[0-9A-Za-z]{1,64})")
access_log = logging.getLogger("wanserve.access")


def request_id(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when it is a sane token, else a new one."""
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            given = value.decode("latin-1").strip()
            return given if _SANE_ID.match(given) else uuid.uuid4().hex
    return uuid.uuid4().hex


def job_id_of(path: str) -> str | None:
    m = _JOB_PATH.match(path)
    return m.group(1) if m else None


def log_access(scope: Scope, status: int, t0: float) -> None:
    if access_log.isEnabledFor(logging.INFO):
        ms = (time.perf_counter() - t0) * 1000
        access_log.info("%s %s %d %.1fms", scope.get("method"), scope.get("path"), status, ms)


class RequestIdMiddleware:
    """Pure ASGI (no buffering, so SSE streams pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        rtoken = request_id_var.set(rid)
        jtoken = job_id_var.set(job_id_of(scope.get("path", "")))
        t0 = time.perf_counter()
        status = 0

        async def send_with_id(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
                msg = {**msg, "headers": [*msg.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(msg)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log_access(scope, status, t0)
            request_id_var.reset(rtoken)
            job_id_var.reset(jtoken)


def install_observability(app: FastAPI) -> None:
    app.add_middleware(RequestIdMiddleware)
