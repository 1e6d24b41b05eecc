"""Structured logs: one JSON object per line, carrying the request id and the job id.

`request_id` is set by the gateway's request-id middleware (and returned as ``X-Request-ID``);
`job_id` by the gateway for ``/v1/videos/{id}`` routes and by the worker for the job it runs.
Either can also be passed per call: ``log.info(..., extra={"job_id": ...})``.
``WANSERVE_LOG_FORMAT=text`` keeps the classic one-line text format.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str = "") -> None:
        super().__init__()
        self.process_name = process

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.process_name:
            out["process"] = self.process_name
        rid = getattr(record, "request_id", None) or request_id_var.get()
        jid = getattr(record, "job_id", None) or job_id_var.get()
        if rid:
            out["request_id"] = rid
        if jid:
            out["job_id"] = jid
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str, fmt: str = "json", process: str = "") -> None:
    """Configure the root logger once per process (replaces ``logging.basicConfig``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(process) if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
