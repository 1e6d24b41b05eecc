"""The Redis job store: the job record is the source of truth; only these transitions write status.

Every transition runs as one Lua script: it checks the current status against `status.ALLOWED`,
writes the new fields, and appends the event to the job's stream (`keys.events`), atomically. The
stream id is the SSE event id, so `Last-Event-ID` resumes without gaps. After a transition (and
after each progress step, with ``record=None``) the store applies its ``effects`` — metrics,
asset retention, webhooks, planned in `app.core.effects`, whose `build_job_store` /
`build_async_job_store` every process uses — then any extra ``store.add_transition_hook(fn)``
listeners. Both must be quick; they hand I/O to a queue.

`JobStore` (sync, used by the worker) lives here; `app.core.jobstore_async.AsyncJobStore` (the
gateway) shares the scripts and the codec.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import redis

from app.core import keys
from app.core.ratelimit import RESERVE_FN
from app.core.schemas import JobRecord
from app.core.status import ALLOWED, EVENT_TYPES, PROGRESS_EVENT, JobStatus

log = logging.getLogger(__name__)

# KEYS: job, events, queued zset, cancel flag. ARGV: allowed (space separated), new status, job id,
# event type, event data, ttl (0 = none), fence (the attempt token the caller holds, "" = none),
# field/value pairs... Replies {0, status, reason} when refused: reason "stale" (a newer attempt
# owns the job: the caller must touch nothing), "cancel" (completion refused: a cancel was asked),
# false (status not allowed, or the record is gone when status is false).
TRANSITION_LUA = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {0, false, false} end
if ARGV[7] ~= '' and (redis.call('HGET', KEYS[1], 'attempt_token') or 'null') ~= ARGV[7] then
  return {0, cur, 'stale'}
end
local ok = false
for s in string.gmatch(ARGV[1], '%S+') do if s == cur then ok = true end end
if not ok then return {0, cur, false} end
if ARGV[2] == 'completed' and redis.call('EXISTS', KEYS[4]) == 1 then return {0, cur, 'cancel'} end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
if #ARGV > 7 then redis.call('HSET', KEYS[1], unpack(ARGV, 8)) end
if cur == 'queued' then redis.call('ZREM', KEYS[3], ARGV[3]) end
if ARGV[2] == 'completed' or ARGV[2] == 'failed' or ARGV[2] == 'cancelled' then
  redis.call('DEL', KEYS[4])
end
local eid = redis.call('XADD', KEYS[2], '*', 'type', ARGV[4], 'data', ARGV[5])
local ttl = tonumber(ARGV[6])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl); redis.call('EXPIRE', KEYS[2], ttl) end
return {1, cur, eid, redis.call('HGETALL', KEYS[1])}
"""

# KEYS: job, events, jobs index, owner index, queued zset, deadlines zset, broker list (the job key
# again when there is no message)[, owner active set, global active set]. ARGV: job id, score
# (created ms), event type, data, queued score (priority band + ms), deadline ("" = none), the
# number n of record fields, the job's Celery message ("" = published by the caller;
# `app.core.celery_message`), per-key limit, global limit, job hash prefix (all three "" without
# the last keys), then the record's n field/value pairs (as arguments: decoding one JSON object
# in Lua cost Redis more than the rest of the script). With the last keys an active-job slot is
# reserved first (`app.core.ratelimit`), in the same round trip. Returns false when the
# job exists, {0, event id, 0-based rank in the queued zset} when created, {1 or 2} when a limit
# refused it (nothing written).
CREATE_LUA = (
    RESERVE_FN
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
if KEYS[8] then
  local refused = reserve(KEYS[8], KEYS[9], ARGV[1], ARGV[9], ARGV[10], ARGV[11])
  if refused ~= 0 then return {refused} end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 12, 11 + 2 * tonumber(ARGV[7])))
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[1])
if ARGV[6] ~= '' then redis.call('ZADD', KEYS[6], ARGV[6], ARGV[1]) end
local eid = redis.call('XADD', KEYS[2], '*', 'type', ARGV[3], 'data', ARGV[4])
if ARGV[8] ~= '' then redis.call('LPUSH', KEYS[7], ARGV[8]) end
return {0, eid, redis.call('ZRANK', KEYS[5], ARGV[1])}
"""
)

# KEYS: job. ARGV: queued zset prefix (+ model id), job id. Returns {the record's HGETALL pairs,
# 0-based rank in its model's queued zset or -1}: a status read is one round trip, position included.
GET_RANKED_LUA = """
local h = redis.call('HGETALL', KEYS[1])
local status, model
for i = 1, #h, 2 do
  if h[i] == 'status' then status = h[i + 1] elseif h[i] == 'model' then model = h[i + 1] end
end
local rank = -1
if status == 'queued' and model then
  local ok, name = pcall(cjson.decode, model)
  if ok and type(name) == 'string' then
    rank = redis.call('ZRANK', ARGV[1] .. name, ARGV[2]) or -1
  end
end
return {h, rank}
"""

# KEYS: job, events, cancel flag. ARGV: step, total, progress, event data, fence ("" = none).
# Returns -2 when a newer attempt owns the job, -1 when the job is gone or no longer running,
# 1 when a cancel was requested, else 0.
PROGRESS_LUA = """
local cur = redis.call('HGET', KEYS[1], 'status')
if cur and ARGV[5] ~= '' and (redis.call('HGET', KEYS[1], 'attempt_token') or 'null') ~= ARGV[5] then
  return -2
end
if cur ~= 'in_progress' then return -1 end
redis.call('HSET', KEYS[1], 'step', ARGV[1], 'total_steps', ARGV[2], 'progress', ARGV[3])
redis.call('XADD', KEYS[2], '*', 'type', 'video.progress', 'data', ARGV[4])
return redis.call('EXISTS', KEYS[3])
"""

# KEYS: job, cancel flag. ARGV: flag ttl. Raises the cancel flag of a running job.
CANCEL_RUNNING_LUA = """
if redis.call('HGET', KEYS[1], 'status') ~= 'in_progress' then return 0 end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
redis.call('HSET', KEYS[1], 'cancel_requested', 'true')
return 1
"""

# KEYS: job. ARGV: pairs. Writes only into an existing record (a deleted job stays deleted).
SET_FIELDS_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


# The attempt token a transition expects the record to carry: False = no check (gateway, reaper),
# None = no attempt has started yet (a worker's first pickup), else the token of the caller's attempt.
Fence = str | None | Literal[False]


def fence_arg(fence: Fence) -> str:
    return "" if fence is False else json.dumps(fence)


@dataclass(frozen=True)
class JobEvent:
    """What a transition (or a progress step) announces; passed to hooks and streamed over SSE."""

    job_id: str
    type: str
    data: dict[str, Any]
    event_id: str | None = None
    previous: JobStatus | None = None
    record: JobRecord | None = None


TransitionHook = Callable[[JobEvent], None | Awaitable[None]]


def encode_fields(fields: dict[str, Any]) -> list[str]:
    """Flatten to HSET pairs: ``status`` raw (Lua compares it), every other value as JSON."""
    out: list[str] = []
    for k, v in encode_values(fields).items():
        out += [k, v]
    return out


_ascii_string = json.encoder.encode_basestring_ascii  # what json.dumps uses for a str


def _json_text(v: Any) -> str:
    """``json.dumps(v)``, the same text, without its per-call set-up for the scalars that make up
    most of a record (a create encodes ~40 values)."""
    t = type(v)
    if t is str:
        return _ascii_string(v)
    if v is None:
        return "null"
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return int.__repr__(v)
    if t is float and math.isfinite(v):
        return float.__repr__(v)
    return json.dumps(v)


def encode_values(fields: dict[str, Any]) -> dict[str, str]:
    """field -> stored text: ``status`` raw (Lua compares it), every other value as JSON (ASCII)."""
    out: dict[str, str] = {}
    for k, v in fields.items():
        if hasattr(v, "model_dump"):
            v = v.model_dump(mode="json")
        out[k] = v.value if isinstance(v, JobStatus) else _json_text(v)
    return out


def encode_record(rec: JobRecord) -> dict[str, str]:
    """``encode_values(rec.model_dump())``, the same texts, from one JSON-mode dump (a create
    encodes ~40 values, nested models included)."""
    out = {k: _json_text(v) for k, v in rec.model_dump(mode="json").items()}
    out["status"] = rec.status.value
    return out


def record_pairs(rec: JobRecord) -> list[str]:
    """`encode_record` flattened to HSET's field, value, field, value, ..."""
    out: list[str] = []
    for k, v in encode_record(rec).items():
        out += (k, v)
    return out


def decode_record(raw: dict[str, str]) -> JobRecord | None:
    if not raw or "status" not in raw or "id" not in raw:  # absent (or a stray partial hash)
        return None
    data = {k: (v if k == "status" else json.loads(v)) for k, v in raw.items()}
    return JobRecord.model_validate(data)


def pairs_to_dict(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def event_data(job_id: str, status: JobStatus, fields: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"id": job_id, "status": status.value}
    for k in ("progress", "step", "total_steps", "attempts", "error", "cancel_reason"):
        if k in fields:
            v = fields[k]
            data[k] = v.model_dump(mode="json") if hasattr(v, "model_dump") else v
    return data


def transition_args(
    job_id: str,
    target: JobStatus,
    fields: dict[str, Any],
    ttl_s: int,
    allowed: frozenset[JobStatus] | None,
    fence: Fence = False,
) -> tuple[list[str], dict[str, Any]]:
    """ARGV of `TRANSITION_LUA` and the event data it publishes."""
    allowed = ALLOWED[target] if allowed is None else allowed
    data = event_data(job_id, target, fields)
    argv = [
        " ".join(sorted(s.value for s in allowed)),
        target.value,
        job_id,
        EVENT_TYPES[target],
        json.dumps(data),
        str(ttl_s if target.is_terminal else 0),
        fence_arg(fence),
        *encode_fields(fields),
    ]
    return argv, data


class TransitionRejected(Exception):
    """The job is not in a status the transition may start from (or it does not exist).

    ``reason``: None (status not allowed, or ``current`` None: the record is gone), ``"stale"``
    (the caller's attempt was superseded by a newer one, which owns the job and its storage) or
    ``"cancel"`` (completion refused because a cancel was requested first).
    """

    def __init__(self, job_id: str, current: JobStatus | None, reason: str | None = None) -> None:
        state = current.value if current else "gone"
        super().__init__(f"job {job_id} is {state}" + (f" ({reason})" if reason else ""))
        self.current = current
        self.reason = reason

    @property
    def gone(self) -> bool:
        """The record no longer exists (deleted or expired): its assets are nobody's."""
        return self.current is None


def prepare_transition(
    rec: JobRecord,
    target: JobStatus,
    fields: dict[str, Any] | None,
    retention_s: int,
    allowed: frozenset[JobStatus] | None,
    fence: Fence = False,
) -> tuple[list[str], list[str], dict[str, Any]]:
    """KEYS, ARGV and event data of one `TRANSITION_LUA` call (shared by the sync and async stores)."""
    fields = dict(fields or {})
    if target.is_terminal:
        now = fields.setdefault("completed_at", time.time())
        fields.setdefault("expires_at", now + retention_s)
    argv, data = transition_args(rec.id, target, fields, retention_s, allowed, fence)
    ks = [keys.job(rec.id), keys.events(rec.id), keys.queued(rec.model), keys.cancel_flag(rec.id)]
    return ks, argv, data


def transition_result(rec: JobRecord, target: JobStatus, data: dict[str, Any], res: list[Any]) -> JobEvent:
    """Interpret `TRANSITION_LUA`'s reply: the event to publish, or `TransitionRejected`."""
    if not res[0]:
        reason = res[2] if len(res) > 2 and isinstance(res[2], str) else None
        raise TransitionRejected(rec.id, JobStatus(res[1]) if res[1] else None, reason)
    new = decode_record(pairs_to_dict(res[3]))
    assert new is not None
    return JobEvent(rec.id, EVENT_TYPES[target], data, res[2], JobStatus(res[1]), new)


class HookRegistry:
    """``effects``: what every change causes (`app.core.effects`); ``hooks``: extra listeners."""

    def __init__(self, effects: TransitionHook | None = None) -> None:
        self.effects = effects
        self.hooks: list[TransitionHook] = []

    def add_transition_hook(self, fn: TransitionHook) -> None:
        self.hooks.append(fn)

    def listeners(self) -> list[TransitionHook]:
        return ([self.effects] if self.effects is not None else []) + self.hooks


class JobStore(HookRegistry):
    """Synchronous store for the worker (one Celery task at a time per process)."""

    def __init__(
        self, client: redis.Redis, *, retention_s: int, effects: TransitionHook | None = None
    ) -> None:
        super().__init__(effects)
        self.r = client
        self.retention_s = retention_s
        self._transition = client.register_script(TRANSITION_LUA)
        self._progress = client.register_script(PROGRESS_LUA)
        self._set_fields = client.register_script(SET_FIELDS_LUA)

    def get(self, job_id: str) -> JobRecord | None:
        return decode_record(self.r.hgetall(keys.job(job_id)))  # type: ignore[arg-type]

    def transition(
        self,
        rec: JobRecord,
        target: JobStatus,
        fields: dict[str, Any] | None = None,
        *,
        allowed: frozenset[JobStatus] | None = None,
        fence: Fence = False,
    ) -> JobRecord:
        """Move ``rec`` to ``target`` atomically; raise `TransitionRejected` when not allowed.

        ``fence``: the attempt token of the caller (a worker's attempt); refused as ``stale`` when
        the record carries another one (a newer attempt took the job over).
        """
        ks, argv, data = prepare_transition(rec, target, fields, self.retention_s, allowed, fence)
        event = transition_result(rec, target, data, self._transition(keys=ks, args=argv))
        self._after(event)  # its effects: metrics, asset retention, webhook
        assert event.record is not None
        return event.record

    def progress(self, job_id: str, step: int, total: int, fence: Fence = False) -> int:
        """Record a finished denoising step; returns -2 (a newer attempt owns the job), -1 (job gone /
        not running), 1 (cancel asked), 0."""
        pct = min(99, int(100 * step / max(total, 1)))
        data = {"id": job_id, "status": "in_progress", "step": step, "total_steps": total, "progress": pct}
        ks = [keys.job(job_id), keys.events(job_id), keys.cancel_flag(job_id)]
        res = int(self._progress(keys=ks, args=[step, total, pct, json.dumps(data), fence_arg(fence)]))
        if res >= 0:
            self._after(JobEvent(job_id, PROGRESS_EVENT, data))
        return res

    def set_fields(self, job_id: str, fields: dict[str, Any]) -> None:
        """Write non-status fields (timings, revised prompt); never used for status."""
        if "status" in fields:
            raise ValueError("status is written only by transitions")
        if fields:
            self._set_fields(keys=[keys.job(job_id)], args=encode_fields(fields))

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(keys.cancel_flag(job_id)))

    def _after(self, ev: JobEvent) -> None:
        for fn in self.listeners():
            try:
                fn(ev)
            except Exception:
                log.exception("transition hook %r failed for %s", fn, ev.job_id)
