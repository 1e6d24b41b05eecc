"""Prometheus metrics that are correct across processes: counters live in Redis, the gateway renders.

Writers (quick ``HINCRBY`` pipelines applied as an effect of every job-store change
(`app.core.effects`), in whichever process made it: worker, Celery parent, gateway; webhook attempts
from `app.core.webhooks`):

- ``wanserve:metrics:jobs``: ``<status>|<error code>`` → jobs that ended so;
- ``wanserve:metrics:stage:<stage>``: a histogram (``b<i>`` bucket counts, ``sum``, ``count``) of
  ``queue_wait`` (at start), ``text_encoding``, ``denoising_step`` (per step), ``decoding``,
  ``encoding``, ``upload`` and ``prompt_extension`` (at completion);
- ``wanserve:metrics:webhooks``: delivery outcome → attempts.

`collect(r, worker_ttl_s)` (gateway, async) reads those plus live state (queue depth and the
oldest queued job's age per model — models from the live workers and ``wanserve:metrics:models``,
filled when a job is queued, so no keyspace scan — workers and ready workers per model, reaper
outcomes) and
`render` returns the Prometheus text exposition via a one-shot custom collector.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import redis
import redis.asyncio as aredis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from app.core import keys
from app.core.jobstore import JobEvent
from app.core.priority import PRIORITIES, band, enqueued_at
from app.core.registry import live_workers

BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
)  # fmt: skip
STAGES = (
    "queue_wait",
    "text_encoding",
    "denoising_step",
    "decoding",
    "encoding",
    "upload",
    "prompt_extension",
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _bucket(value: float) -> str:
    for i, le in enumerate(BUCKETS):
        if value <= le:
            return f"b{i}"
    return f"b{len(BUCKETS)}"  # +Inf


Op = tuple[str, str, float]  # (hash key, field, increment)


def event_ops(ev: JobEvent) -> list[Op]:
    """The counter increments one transition implies (none for progress events)."""
    rec = ev.record
    if rec is None:
        return []
    ops: list[Op] = []
    if ev.type == "video.started" and rec.attempts == 1 and "queue_wait" in rec.timings:
        ops += observe_ops("queue_wait", rec.timings["queue_wait"])
    if rec.status.is_terminal:
        code = rec.error.code if rec.error is not None else ""
        ops.append((keys.METRICS_JOBS, f"{rec.status.value}|{code}", 1))
    if ev.type == "video.completed":
        t = rec.timings
        for stage in ("text_encoding", "decoding", "encoding", "upload", "prompt_extension"):
            if stage in t:
                ops += observe_ops(stage, t[stage])
        steps = rec.params.num_inference_steps
        if "denoising" in t and steps > 0:
            per_step = t["denoising"] / steps
            for _ in range(min(steps, 1000)):
                ops += observe_ops("denoising_step", per_step)
    return _merge(ops)


def observe_ops(stage: str, value: float) -> list[Op]:
    k = keys.metrics_stage(stage)
    v = max(0.0, float(value))
    return [(k, _bucket(v), 1), (k, "sum", v), (k, "count", 1)]


def _merge(ops: list[Op]) -> list[Op]:
    acc: dict[tuple[str, str], float] = {}
    for k, f, v in ops:
        acc[(k, f)] = acc.get((k, f), 0.0) + v
    return [(k, f, v) for (k, f), v in acc.items()]


def _apply(pipe: Any, ops: list[Op]) -> None:
    for k, f, v in ops:
        if f == "sum":
            pipe.hincrbyfloat(k, f, v)
        else:
            pipe.hincrby(k, f, int(v))


def record_sync(r: redis.Redis, ops: list[Op]) -> None:
    if ops:
        with r.pipeline(transaction=False) as p:
            _apply(p, ops)
            p.execute()


async def record_async(r: aredis.Redis, ops: list[Op]) -> None:
    if ops:
        async with r.pipeline(transaction=False) as p:
            _apply(p, ops)
            await p.execute()


# --- exposition ----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    queue_depth: dict[str, float] = field(default_factory=dict)
    oldest_age_s: dict[str, float] = field(default_factory=dict)
    jobs: dict[tuple[str, str], float] = field(default_factory=dict)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    webhooks: dict[str, float] = field(default_factory=dict)
    reaper: dict[str, float] = field(default_factory=dict)
    workers: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    leases: int = 0


async def collect(r: aredis.Redis, worker_ttl_s: float) -> Snapshot:
    snap = Snapshot()
    now = time.time()
    for w in await live_workers(r, worker_ttl_s):
        snap.workers[w.model_id] = snap.workers.get(w.model_id, 0) + 1
        snap.ready[w.model_id] = snap.ready.get(w.model_id, 0) + (w.state in ("ready", "busy"))
    models = set(snap.workers)
    models |= {str(m) for m in await r.smembers(keys.METRICS_MODELS)}
    for m in sorted(models):
        snap.queue_depth[m] = int(await r.zcard(keys.queued(m)))
        oldest = [now]  # the queue's front is its highest priority: look at each band's first job
        for prio in PRIORITIES:
            lo, hi = band(prio)
            first = await r.zrangebyscore(keys.queued(m), lo, f"({hi}", start=0, num=1, withscores=True)
            oldest += [enqueued_at(score) for _, score in cast(list[tuple[str, float]], first)]
        snap.oldest_age_s[m] = max(0.0, now - min(oldest))
    async with r.pipeline(transaction=False) as p:
        p.hgetall(keys.METRICS_JOBS)
        p.hgetall(keys.METRICS_WEBHOOKS)
        p.hgetall(keys.METRICS_REAPER)
        p.zcard(keys.LEASES)
        for s in STAGES:
            p.hgetall(keys.metrics_stage(s))
        res = await p.execute()
    for f, v in res[0].items():
        status, _, code = str(f).partition("|")
        snap.jobs[(status, code)] = float(v)
    snap.webhooks = {str(k): float(v) for k, v in res[1].items()}
    snap.reaper = {str(k): float(v) for k, v in res[2].items()}
    snap.leases = int(res[3])
    for s, raw in zip(STAGES, res[4:], strict=True):
        snap.stages[s] = {str(k): float(v) for k, v in raw.items()}
    return snap


class _SnapshotCollector(Collector):
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Any]:
        s = self.snap
        g = GaugeMetricFamily("wanserve_queue_depth", "Jobs waiting in the queue", labels=["model"])
        for m, v in s.queue_depth.items():
            g.add_metric([m], v)
        yield g
        g = GaugeMetricFamily(
            "wanserve_queue_oldest_age_seconds", "Age of the oldest queued job", labels=["model"]
        )
        for m, v in s.oldest_age_s.items():
            g.add_metric([m], v)
        yield g
        c = CounterMetricFamily(
            "wanserve_jobs", "Jobs that reached a terminal status", labels=["status", "error_code"]
        )
        for (status, code), v in sorted(s.jobs.items()):
            c.add_metric([status, code], v)
        yield c
        h = HistogramMetricFamily(
            "wanserve_stage_duration_seconds", "Duration of each stage of a job", labels=["stage"]
        )
        for stage in STAGES:
            raw = s.stages.get(stage, {})
            cum, buckets = 0.0, []
            for i, le in enumerate(BUCKETS):
                cum += raw.get(f"b{i}", 0.0)
                buckets.append((repr(le), cum))
            buckets.append(("+Inf", cum + raw.get(f"b{len(BUCKETS)}", 0.0)))
            h.add_metric([stage], buckets, raw.get("sum", 0.0))
        yield h
        c = CounterMetricFamily(
            "wanserve_webhook_deliveries", "Webhook delivery attempts", labels=["outcome"]
        )
        for o, v in sorted(s.webhooks.items()):
            c.add_metric([o], v)
        yield c
        c = CounterMetricFamily(
            "wanserve_reaped_jobs", "Jobs whose worker died, found by the reaper", labels=["outcome"]
        )
        for o, v in sorted(s.reaper.items()):
            c.add_metric([o], v)
        yield c
        g = GaugeMetricFamily("wanserve_workers", "Live workers", labels=["model"])
        for m, v in s.workers.items():
            g.add_metric([m], v)
        yield g
        g = GaugeMetricFamily(
            "wanserve_workers_ready", "Live workers that are ready or busy", labels=["model"]
        )
        for m, v in s.ready.items():
            g.add_metric([m], v)
        yield g
        yield GaugeMetricFamily("wanserve_jobs_running", "Jobs held by a worker (leases)", value=s.leases)


def render(snap: Snapshot) -> bytes:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_SnapshotCollector(snap))
    return generate_latest(reg)
