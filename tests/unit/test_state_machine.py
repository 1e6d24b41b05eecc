"""Property test: the Lua transitions in Redis agree with the pure status machine (`status.ALLOWED`)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.config import Settings
from app.core.jobstore import JobStore, TransitionRejected, encode_fields, pairs_to_dict
from app.core.redisconn import sync_client
from app.core.schemas import JobRecord, ResolvedParams
from app.core.status import ALLOWED, TERMINAL, JobStatus
from tests.service_support import SIGNING_KEY

TARGETS = list(ALLOWED)


@pytest.fixture(scope="module")
def store(redis_url, tmp_path_factory):
    s = Settings(redis_url=redis_url, data_dir=tmp_path_factory.mktemp("sm"), signing_key=SIGNING_KEY)
    return JobStore(sync_client(s), retention_s=60)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(TARGETS), min_size=1, max_size=8))
def test_transitions_match_the_model(store, targets) -> None:
    params = ResolvedParams(
        width=32,
        height=32,
        num_frames=5,
        fps=16,
        num_inference_steps=2,
        guidance_scale=[5.0],
        shift=5.0,
        sampler="unipc",
        seed=0,
    )
    rec = JobRecord(
        id=f"video_sm{time.monotonic_ns()}",
        status=JobStatus.QUEUED,
        model="sm",
        prompt="p",
        params=params,
        created_at=time.time(),
    )
    store.r.hset(f"wanserve:job:{rec.id}", mapping=pairs_to_dict(encode_fields(rec.model_dump())))
    status = JobStatus.QUEUED
    events = 0
    for target in targets:
        if status in ALLOWED[target]:
            rec = store.transition(rec, target)
            status = target
            events += 1
        else:
            with pytest.raises(TransitionRejected) as exc:
                store.transition(rec, target)
            assert exc.value.current is status
        assert store.get(rec.id).status is status
    assert store.r.xlen(f"wanserve:job:{rec.id}:events") == events
    if status.is_terminal:
        assert store.get(rec.id).completed_at is not None
        assert store.r.ttl(f"wanserve:job:{rec.id}") > 0


def test_the_allowed_table() -> None:
    assert JobStatus.QUEUED in ALLOWED[JobStatus.IN_PROGRESS]
    assert JobStatus.IN_PROGRESS in ALLOWED[JobStatus.IN_PROGRESS]  # redelivery
    assert JobStatus.QUEUED not in ALLOWED[JobStatus.COMPLETED]
    assert TERMINAL == {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    for terminal in TERMINAL:
        assert terminal.is_terminal
        assert all(terminal not in sources for sources in ALLOWED.values())
