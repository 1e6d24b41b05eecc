"""`GET /v1/videos/{id}/logs`: the job's own log lines, owner-only (another key's job is a 404).

Lines are rendered from what the job already records, so no worker log is shipped or parsed: its
event stream (every transition and denoising step, with the stream id's millisecond time) and, once it
is finished, the record's prompt-extension outcome and stage timings. How a failed or cancelled job ended
(a failure's reason) is always the last line.
"""

from __future__ import annotations

import json
from typing import Any, Literal, cast

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.deps import JobDep, RedisDep
from app.core import keys
from app.core.previews import PREVIEW_EVENT
from app.core.schemas import JobRecord

router = APIRouter(tags=["videos"])

Level = Literal["info", "warning", "error"]


class LogLine(BaseModel):
    at: float  # unix seconds
    level: Level
    event: str
    message: str


class JobLogs(BaseModel):
    object: Literal["list"] = "list"
    video_id: str
    data: list[LogLine]


def _line(event: str, data: dict[str, Any]) -> tuple[Level, str]:
    kind = event.removeprefix("video.")
    if kind == "progress":
        return "info", f"denoising step {data.get('step')}/{data.get('total_steps')}"
    if kind == "started":
        return "info", f"started (attempt {data.get('attempts', 1)})"
    if kind == "failed":
        err = data.get("error") or {}
        return "error", f"failed: {err.get('code', 'error')}: {err.get('message', '')}".rstrip(": ")
    if kind == "cancelled":
        return "warning", f"cancelled: {data['cancel_reason']}" if data.get("cancel_reason") else "cancelled"
    if kind == "queued" and data.get("attempts"):
        return "warning", f"requeued (attempt {data['attempts']} next)"
    return "info", kind


def _record_lines(rec: JobRecord, at: float) -> list[LogLine]:
    out: list[LogLine] = []
    reason = rec.prompt_extension.reason if rec.prompt_extension is not None else None
    if reason:
        out.append(LogLine(at=at, level="warning", event="prompt_extension", message=str(reason)))
    if rec.timings:
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in rec.timings.items())
        out.append(LogLine(at=at, level="info", event="timings", message=stages))
    return out


@router.get("/v1/videos/{video_id}/logs", response_model=JobLogs)
async def video_logs(rec: JobDep, redis: RedisDep) -> JobLogs:
    """The job's log lines, oldest first: stages, steps, warnings and the reason of a failure."""
    entries = cast(list[tuple[str, dict[str, str]]], await redis.xrange(keys.events(rec.id), "-", "+"))
    lines: list[LogLine] = []
    for eid, fields in entries:
        if fields.get("type") == PREVIEW_EVENT:  # pictures, not log lines
            continue
        at = int(eid.split("-", 1)[0]) / 1000
        try:
            data = json.loads(fields.get("data", "{}"))
        except ValueError:
            data = {}
        level, message = _line(fields.get("type", ""), data if isinstance(data, dict) else {})
        lines.append(LogLine(at=at, level=level, event=fields.get("type", ""), message=message))
    last_at = lines[-1].at if lines else float(rec.created_at)
    extra = _record_lines(rec, last_at)
    if lines and lines[-1].event in ("video.failed", "video.cancelled"):  # how it ended stays last
        lines[-1:-1] = extra
    else:
        lines += extra
    return JobLogs(video_id=rec.id, data=lines)
