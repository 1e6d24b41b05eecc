"""The effects of a job's change (app/core/effects.py) are the same in every process: metrics,
asset retention and the webhook, planned in one place and applied by both stores."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from app.core import keys
from app.core.config import Settings
from app.core.effects import (
    CountMetrics,
    Effects,
    ScheduleRetention,
    SendWebhook,
    build_async_job_store,
    build_job_store,
)
from app.core.jobstore import JobEvent
from app.core.redisconn import async_client, sync_client
from app.core.schemas import JobErrorInfo, JobRecord, ResolvedParams
from app.core.status import JobStatus
from app.core.storage import make_storage
from tests.service_support import SIGNING_KEY

HOOK = "https://hooks.example.com/wan"


@pytest.fixture
def settings(redis_url, tmp_path) -> Settings:
    return Settings(redis_url=redis_url, data_dir=tmp_path, signing_key=SIGNING_KEY)


def record(**fields: Any) -> JobRecord:
    params = ResolvedParams(
        width=32,
        height=32,
        num_frames=5,
        fps=16,
        num_inference_steps=3,
        guidance_scale=[5.0],
        shift=5.0,
        sampler="unipc",
        seed=1,
    )
    base: dict[str, Any] = {
        "id": f"video_{uuid.uuid4().hex}",
        "status": JobStatus.QUEUED,
        "model": "effects-model",
        "prompt": "p",
        "params": params,
        "created_at": time.time(),
    }
    return JobRecord(**(base | fields))


class Sent:
    def __init__(self, fail: bool = False) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(self, name: str, *, args: tuple[Any, ...], queue: str) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        assert (name, queue) == ("wan.deliver_webhook", "webhooks")
        self.messages.append(args[0])


def test_a_failure_plans_metrics_retention_and_its_webhook(settings) -> None:
    failed = record(
        status=JobStatus.FAILED,
        webhook_url=HOOK,
        expires_at=time.time() + 60,
        error=JobErrorInfo(code="worker_lost", message="lost"),
    )
    effects = Effects(settings, make_storage(settings)).plan(
        JobEvent(failed.id, "video.failed", {}, record=failed)
    )
    kinds = [type(e) for e in effects]
    assert kinds == [CountMetrics, ScheduleRetention, SendWebhook]
    assert effects[1] == ScheduleRetention(failed.id, failed.expires_at)
    webhook = effects[2]
    assert isinstance(webhook, SendWebhook) and webhook.message["type"] == "video.failed"
    assert json.loads(webhook.message["body"])["data"]["error"]["code"] == "worker_lost"
    # without a webhook URL nothing is sent, the rest stays
    quiet = failed.model_copy(update={"webhook_url": None})
    plan = Effects(settings, make_storage(settings)).plan(
        JobEvent(quiet.id, "video.failed", {}, record=quiet)
    )
    assert [type(e) for e in plan] == [CountMetrics, ScheduleRetention]


def test_sync_store_applies_every_effect_and_one_failing_skips_none(settings) -> None:
    async def create(rec: JobRecord) -> None:
        r = async_client(settings)
        try:
            await build_async_job_store(settings, r, storage=make_storage(settings), send_task=Sent()).create(
                rec
            )
        finally:
            await r.aclose()

    for sent in (Sent(), Sent(fail=True)):
        rec = record(webhook_url=HOOK)
        asyncio.run(create(rec))
        r = sync_client(settings)
        assert r.sismember(keys.METRICS_MODELS, "effects-model")  # a queued job gives its model queue gauges
        store = build_job_store(settings, r, storage=make_storage(settings), send_task=sent)
        before = int(r.hget(keys.METRICS_JOBS, "failed|worker_lost") or 0)
        err = JobErrorInfo(code="worker_lost", message="lost")
        done = store.transition(rec, JobStatus.FAILED, {"error": err})
        assert done.status is JobStatus.FAILED
        assert r.zscore(keys.ASSET_EXPIRY, rec.id) == pytest.approx(done.expires_at)
        assert int(r.hget(keys.METRICS_JOBS, "failed|worker_lost") or 0) == before + 1
        assert [m["type"] for m in sent.messages] == ([] if sent.fail else ["video.failed"])
