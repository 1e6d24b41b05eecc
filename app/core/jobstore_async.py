"""The gateway's side of the job store (redis.asyncio): create, read, list, cancel, delete.

Shares the Lua scripts and codec of `app.core.jobstore`; see that module for the invariants.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any, cast

import redis.asyncio as aredis
from pydantic import ValidationError

from app.core import keys
from app.core.bodycheck import check_body
from app.core.celery_message import BrokerPush
from app.core.errors import InvalidInput, ServiceError, UnreadableRecord
from app.core.jobstore import (
    CANCEL_RUNNING_LUA,
    CREATE_LUA,
    GET_RANKED_LUA,
    TRANSITION_LUA,
    HookRegistry,
    JobEvent,
    TransitionHook,
    TransitionRejected,
    decode_record,
    event_data,
    pairs_to_dict,
    prepare_transition,
    record_pairs,
    transition_result,
)
from app.core.priority import queue_score
from app.core.ratelimit import RateLimiter, SlotClaim
from app.core.redis_mux import RedisMux, ScriptRunner
from app.core.schemas import JobRecord
from app.core.status import EVENT_TYPES, JobStatus

log = logging.getLogger(__name__)


def _decode_listed(job_id: str, raw: dict[str, str]) -> JobRecord | None:
    """A record for a listing; one that cannot be decoded or rendered is logged and left out,
    so a single poisoned record never breaks the listing for everyone."""
    try:
        rec = decode_record(raw)
        if rec is not None:
            check_body(rec.model_dump(mode="json"), field=job_id, max_depth=64)
        return rec
    except Exception as exc:
        log.error("job %s: stored record cannot be rendered (%r); left out of the list", job_id, exc)
        return None


_RENDER_DEPTH = 64  # the deepest stored record a read still renders
_SHALLOW = 32  # a field with at most this many brackets nests at most that deep


def _plainly_renderable(raw: dict[str, str]) -> bool:
    """True when no stored field can hold what `check_body` refuses, judged from the text alone: a
    lone surrogate can only come from a ``\\u`` escape, deep nesting only from many brackets. Most
    records pass, and skip re-dumping the whole record on every read."""
    for v in raw.values():
        if "\\u" in v or v.count("[") + v.count("{") > _SHALLOW:
            return False
    return True


def _decode_fast(raw: dict[str, str]) -> JobRecord | None:
    """`decode_record` in one pass: the stored values are JSON texts, so the record is joined into
    one JSON object for pydantic's own parser (a quarter of the time of ~40 ``json.loads`` and a
    dict validation). Anything it does not accept goes the usual way, which raises as before."""
    if not raw or "status" not in raw or "id" not in raw:
        return None
    try:
        parts = [f'"{k}":' + (json.dumps(v) if k == "status" else v) for k, v in raw.items()]
        return JobRecord.model_validate_json("{" + ",".join(parts) + "}")
    except (ValidationError, ValueError):
        return decode_record(raw)


def lenient_field(raw: dict[str, str], name: str) -> str | None:
    """One string field of a raw record, read without trusting the rest of it."""
    try:
        value = json.loads(raw[name])
    except (KeyError, ValueError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def _reason(exc: Exception) -> str:
    if isinstance(exc, ServiceError):
        return exc.detail
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
    return type(exc).__name__


class AsyncJobStore(HookRegistry):
    """Async job store. Effects and hooks may be plain functions or coroutine functions."""

    def __init__(
        self,
        client: aredis.Redis,
        *,
        retention_s: int,
        cancel_flag_ttl_s: int = 86400,
        effects: TransitionHook | None = None,
    ) -> None:
        super().__init__(effects)
        self.r = client
        self.retention_s = retention_s
        self.cancel_flag_ttl_s = cancel_flag_ttl_s
        self._create: ScriptRunner = client.register_script(CREATE_LUA)
        self._get_ranked: ScriptRunner = client.register_script(GET_RANKED_LUA)
        self._transition = client.register_script(TRANSITION_LUA)
        self._cancel_running = client.register_script(CANCEL_RUNNING_LUA)

    def run_hot_scripts_on(self, mux: RedisMux) -> None:
        """The create and read scripts (one per create and per status poll) through ``mux``, the
        process's pipelined connection, instead of the pool (`app.core.redis_mux`)."""
        self._create = mux.script(CREATE_LUA)
        self._get_ranked = mux.script(GET_RANKED_LUA)

    async def create(self, rec: JobRecord) -> JobRecord:
        """Store a new `queued` job, index it and publish `video.queued`."""
        await self.create_ranked(rec)
        return rec

    async def create_ranked(
        self,
        rec: JobRecord,
        claim: tuple[SlotClaim, RateLimiter] | None = None,
        push: BrokerPush | None = None,
    ) -> int:
        """`create`, answering the new job's queue position (1 = next to start) in the same trip.

        With ``claim`` the job's active-job slot is reserved in the same script, before anything
        is written (429 from the limiter when refused); with ``push`` the job's broker message is
        queued by the same script, atomically with the record."""
        data = event_data(rec.id, rec.status, {"progress": 0})
        ks = [
            keys.job(rec.id),
            keys.events(rec.id),
            keys.JOBS_INDEX,
            keys.owner_index(rec.owner) if rec.owner else keys.JOBS_INDEX,
            keys.queued(rec.model),
            keys.DEADLINES,
            keys.job(rec.id) if push is None else push.list_key,
        ]
        argv = [rec.id, str(int(rec.created_at * 1000)), EVENT_TYPES[rec.status], json.dumps(data)]
        argv += [
            str(queue_score(rec.priority, rec.created_at)),
            "" if rec.deadline_at is None else repr(rec.deadline_at),
        ]
        fields = record_pairs(rec)
        argv += [str(len(fields) // 2), "" if push is None else push.message]
        if claim is not None:
            ks += claim[0].keys
            argv += claim[0].args
        else:
            argv += ["", "", ""]
        argv += fields
        res = await self._create(keys=ks, args=argv)
        if res is None:
            raise InvalidInput.field("id", f"job {rec.id} already exists")
        if claim is not None:
            claim[1].check_reserved(int(res[0]))
        _, eid, rank = res
        await self._after(JobEvent(rec.id, EVENT_TYPES[rec.status], data, eid, None, rec))
        return int(rank) + 1

    async def get(self, job_id: str) -> JobRecord | None:
        """The record, None if absent, or `UnreadableRecord` if it cannot be decoded or rendered."""
        raw = cast(dict[str, str], await self.r.hgetall(keys.job(job_id)))
        return self._decode(job_id, raw)

    async def get_ranked(self, job_id: str) -> tuple[JobRecord | None, int | None]:
        """`get` with the job's queue position (None unless queued), in one round trip."""
        flat, rank = await self._get_ranked(keys=[keys.job(job_id)], args=[keys.queued(""), job_id])
        raw = flat if isinstance(flat, dict) else pairs_to_dict(flat)
        rec = self._decode(job_id, raw)
        pos = None if rec is None or rec.status is not JobStatus.QUEUED or int(rank) < 0 else int(rank) + 1
        return rec, pos

    def _decode(self, job_id: str, raw: dict[str, str]) -> JobRecord | None:
        try:
            rec = _decode_fast(raw)
            if rec is not None and not _plainly_renderable(raw):
                check_body(rec.model_dump(mode="json"), field=job_id, max_depth=_RENDER_DEPTH)
            return rec
        except Exception as exc:
            log.error("job %s: stored record cannot be rendered: %r", job_id, exc)
            raise UnreadableRecord(
                job_id,
                owner=lenient_field(raw, "owner"),
                model=lenient_field(raw, "model"),
                reason=_reason(exc),
            ) from exc

    async def transition(
        self,
        rec: JobRecord,
        target: JobStatus,
        fields: dict[str, Any] | None = None,
        *,
        allowed: frozenset[JobStatus] | None = None,
    ) -> JobRecord:
        ks, argv, data = prepare_transition(rec, target, fields, self.retention_s, allowed)
        event = transition_result(rec, target, data, await self._transition(keys=ks, args=argv))
        await self._after(event)  # its effects: metrics, asset retention, webhook
        assert event.record is not None
        return event.record

    async def cancel(self, rec: JobRecord) -> JobRecord:
        """Queued → cancelled at once; running → raise the cancel flag the worker checks every step.

        Returns the record after the call; a terminal record is returned unchanged.
        """
        try:
            return await self.transition(
                rec, JobStatus.CANCELLED, {"cancel_requested": True}, allowed=frozenset({JobStatus.QUEUED})
            )
        except TransitionRejected as exc:
            if exc.current is not JobStatus.IN_PROGRESS:
                current = await self.get(rec.id)
                return current or rec
        await self._cancel_running(
            keys=[keys.job(rec.id), keys.cancel_flag(rec.id)], args=[self.cancel_flag_ttl_s]
        )
        return await self.get(rec.id) or rec

    async def delete(self, rec: JobRecord) -> None:
        """Remove the record, its events and index entries (a running job sees it gone and stops)."""
        await self.purge(
            rec.id, owner=rec.owner, model=rec.model, running=rec.status is JobStatus.IN_PROGRESS
        )

    async def purge(self, job_id: str, *, owner: str | None, model: str | None, running: bool = True) -> None:
        """`delete` by what is known of a record, also one that cannot be read (`UnreadableRecord`)."""
        async with self.r.pipeline(transaction=True) as p:
            if running:
                p.set(keys.cancel_flag(job_id), "1", ex=self.cancel_flag_ttl_s)
            p.delete(keys.job(job_id), keys.events(job_id), keys.preview(job_id))
            p.zrem(keys.JOBS_INDEX, job_id)
            if owner:
                p.zrem(keys.owner_index(owner), job_id)
            if model:
                p.zrem(keys.queued(model), job_id)
            await p.execute()

    async def queue_position(self, rec: JobRecord) -> int | None:
        """1 for the next job to start; None unless queued."""
        if rec.status is not JobStatus.QUEUED:
            return None
        rank = await self.r.zrank(keys.queued(rec.model), rec.id)
        return None if rank is None else cast(int, rank) + 1

    async def list(
        self, *, owner: str | None, after: str | None, limit: int, order: str
    ) -> tuple[list[JobRecord], bool]:
        """A page of jobs (newest first for ``order="desc"``) after the cursor id, and has_more."""
        index = keys.owner_index(owner) if owner else keys.JOBS_INDEX
        desc = order == "desc"
        start = 0
        if after is not None:
            rank = await (self.r.zrevrank(index, after) if desc else self.r.zrank(index, after))
            if rank is None:
                raise InvalidInput.field("after", f"unknown cursor {after!r}")
            start = cast(int, rank) + 1
        out: list[JobRecord] = []
        # expired records leave index entries behind: keep reading past them until the page (plus
        # one, to learn has_more) is full or the index ends, so a page is never short while live
        # jobs remain after it
        while len(out) <= limit:
            want = limit + 1 - len(out)
            stop = start + max(want, 16) - 1
            ids = cast(
                list[str],
                await (self.r.zrevrange(index, start, stop) if desc else self.r.zrange(index, start, stop)),
            )
            if not ids:
                break
            async with self.r.pipeline(transaction=False) as p:
                for job_id in ids:
                    p.hgetall(keys.job(job_id))
                raws = await p.execute()
            gone: list[str] = []
            for job_id, raw in zip(ids, raws, strict=True):
                rec = _decode_listed(job_id, raw)
                if rec is None:
                    if not raw:
                        gone.append(job_id)
                elif len(out) <= limit:
                    out.append(rec)
            start += len(ids)
            if gone:  # expired records: drop their index entries lazily
                await self.r.zrem(index, *gone)
                start -= len(gone)  # the ranks after them moved down
        return out[:limit], len(out) > limit

    async def _after(self, ev: JobEvent) -> None:
        for fn in self.listeners():
            try:
                res = fn(ev)
                if inspect.isawaitable(res):
                    await res
            except Exception:
                log.exception("transition hook %r failed for %s", fn, ev.job_id)
