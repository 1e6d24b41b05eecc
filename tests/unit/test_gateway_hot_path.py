"""The gateway's one-round-trip create and read against a real redis-server: the same answers as the
separate calls they replace, the active-job limit enforced inside the create script, a poisoned
record still refused on read, and the served-models view refreshed for a model it has not seen."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from app.api.served import ServedModels
from app.core import keys, registry
from app.core.errors import UnreadableRecord
from app.core.jobstore import JobStore
from app.core.jobstore_async import AsyncJobStore, _plainly_renderable
from app.core.ratelimit import RateLimiter, RateLimitExceeded, RateLimits
from app.core.redis_mux import RedisMux
from app.core.redisconn import async_client, sync_client
from app.core.status import JobStatus
from model.presets import PRESETS
from tests.service_support import SIGNING_KEY
from tests.unit.test_jobstore import record


@pytest.fixture
def settings(redis_url, tmp_path):
    from app.core.config import Settings

    return Settings(redis_url=redis_url, data_dir=tmp_path, signing_key=SIGNING_KEY)


def _id(tag: str) -> str:
    return f"video_{tag}{time.monotonic_ns()}"


def _model() -> str:  # a model of this test's own: other tests count the queue of model "m"
    return f"hot{time.monotonic_ns()}"


def _store(r, settings, via_mux: bool) -> tuple[AsyncJobStore, RedisMux | None]:
    store = AsyncJobStore(r, retention_s=60)
    mux = RedisMux.from_url(settings.redis_url, timeout_s=2) if via_mux else None
    if mux is not None:
        store.run_hot_scripts_on(mux)  # as the gateway runs them
    return store, mux


@pytest.mark.parametrize("via_mux", [False, True], ids=["pool", "mux"])
def test_ranked_create_and_get_match_the_separate_reads(settings, via_mux: bool) -> None:
    async def scenario() -> None:
        r = async_client(settings)
        store, mux = _store(r, settings, via_mux)
        model = _model()
        first, second = record(_id("a"), model), record(_id("b"), model)
        assert await store.create_ranked(first) == 1
        assert await store.create_ranked(second) == 2
        rec, pos = await store.get_ranked(second.id)
        assert rec == await store.get(second.id) and pos == await store.queue_position(second) == 2
        started = JobStore(sync_client(settings), retention_s=60).transition(first, JobStatus.IN_PROGRESS)
        assert await store.get_ranked(first.id) == (started, None)  # not queued: no position
        assert (await store.get_ranked(second.id))[1] == 1
        assert await store.get_ranked(_id("absent")) == (None, None)
        if mux is not None:
            await mux.close()
        await r.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("via_mux", [False, True], ids=["pool", "mux"])
def test_create_script_enforces_the_global_limit_and_writes_nothing_when_refused(
    settings, via_mux: bool
) -> None:
    async def scenario() -> None:
        r = async_client(settings)
        await r.delete(keys.ACTIVE_ALL)
        store, mux = _store(r, settings, via_mux)
        limiter = RateLimiter(r, RateLimits(max_active_jobs=0, max_queued_global=1))
        claim = (limiter.slot_claim("key_t", per_key=False), limiter)
        model = _model()
        ok = record(_id("ok"), model)
        await store.create_ranked(ok, claim)
        assert await r.sismember(keys.ACTIVE_ALL, ok.id)
        refused = record(_id("no"), model)
        with pytest.raises(RateLimitExceeded) as err:
            await store.create_ranked(refused, claim)
        assert err.value.status == 429 and err.value.headers["Retry-After"]
        assert not await r.exists(keys.job(refused.id)) and not await r.sismember(keys.ACTIVE_ALL, refused.id)
        await store.delete(ok)  # its slot is pruned lazily: the next create fits again
        await store.create_ranked(refused, claim)
        assert await r.exists(keys.job(refused.id))
        await r.delete(keys.ACTIVE_ALL)
        if mux is not None:
            await mux.close()
        await r.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("via_mux", [False, True], ids=["pool", "mux"])
def test_a_poisoned_record_is_still_refused_on_read(settings, via_mux: bool) -> None:
    assert _plainly_renderable({"prompt": '"a cat"', "params": '{"seed": [1, 2]}'})
    assert not _plainly_renderable({"prompt": '"\\ud800"'})
    assert not _plainly_renderable({"metadata": "[" * 40 + "]" * 40})

    async def scenario() -> None:
        r = async_client(settings)
        store, mux = _store(r, settings, via_mux)
        rec = record(_id("deep"), _model())
        await store.create(rec)
        deep: object = 1
        for _ in range(80):
            deep = [deep]
        await r.hset(keys.job(rec.id), "metadata", json.dumps({"k": deep}))
        with pytest.raises(UnreadableRecord):
            await store.get_ranked(rec.id)
        if mux is not None:
            await mux.close()
        await r.aclose()

    asyncio.run(scenario())


def test_served_models_reuses_its_answer_but_looks_up_an_unseen_model(settings) -> None:
    preset = PRESETS["tiny-ti2v"]
    sync = sync_client(settings)

    def announce(worker_id: str, model_id: str) -> None:
        registry.publish_heartbeat(
            sync,
            worker_id=worker_id,
            preset_json=json.dumps({**preset.to_dict(), "model_id": model_id}),
            model_id=model_id,
            state="ready",
            device="cpu",
            current_job=None,
            ttl_s=60,
        )

    async def scenario() -> None:
        r = async_client(settings)
        served = ServedModels(r, worker_ttl_s=60, ttl_s=60)
        a, b = f"ma{time.monotonic_ns()}", f"mb{time.monotonic_ns()}"
        announce(f"w-{a}", a)
        first = await served.get(a)
        assert a in first and b not in first
        announce(f"w-{b}", b)
        assert await served.get(a) is first  # within ttl_s, the model known: no registry read
        assert b in await served.get(b)  # an unseen model is looked up at once
        await r.aclose()

    asyncio.run(scenario())
