"""The create script's broker message is the one Celery itself publishes.

`app.core.celery_message` writes the task message the gateway's create script pushes; here the
installed Celery/kombu publish the same task (`JobQueue.enqueue`, the fallback path) to a real
redis-server and the two are compared byte for byte, with only the per-publish random values
(``delivery_tag``, ``reply_to``) set equal, for every priority and for a named queue. The real
workers that consume script-pushed messages are in tests/integration (create and complete,
priority order, queued recovery)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis

from app.api.queue import JobQueue
from app.core import keys
from app.core.config import Settings
from app.core.priority import PRIORITIES, broker_lists
from tests.service_support import SIGNING_KEY


@pytest.fixture
def settings(redis_url, tmp_path) -> Settings:
    return Settings(redis_url=redis_url, data_dir=tmp_path, signing_key=SIGNING_KEY)


def _only_message(r: redis.Redis, queue: str) -> tuple[str, str]:
    found = [(name, m) for name in broker_lists(queue) for m in r.lrange(name, 0, -1)]
    assert len(found) == 1, found
    name, raw = found[0]
    r.delete(name)
    return name, raw


def _same_random_values(text: str, like: str) -> str:
    msg, ref = json.loads(text), json.loads(like)
    for k in ("delivery_tag", "reply_to"):
        msg["properties"][k] = ref["properties"][k]
    return json.dumps(msg)


@pytest.mark.parametrize("priority", PRIORITIES)
@pytest.mark.parametrize("named_queue", [None, "extend.test"])
@pytest.mark.parametrize("odd_id", [False, True])  # True: not the template path, built in full
def test_pushed_message_is_celerys_own(
    settings, priority: str, named_queue: str | None, odd_id: bool
) -> None:
    model = f"msg{time.monotonic_ns()}"
    queue = named_queue or keys.model_queue(model)
    job_id = f"video_{time.monotonic_ns():x}" + ("é'\"" if odd_id else "")
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    jq = JobQueue(settings)
    try:
        asyncio.run(jq.enqueue(job_id, model, queue=named_queue, priority=priority))
        celery_list, celery_text = _only_message(r, queue)
        push = jq.push(job_id, model, queue=named_queue, priority=priority)
        assert push is not None
        assert push.list_key == celery_list
        assert _same_random_values(push.message, celery_text) == celery_text
        ours = json.loads(push.message)["properties"]
        assert ours["delivery_tag"] != json.loads(celery_text)["properties"]["delivery_tag"]
    finally:
        jq.close()
        r.close()


def test_no_push_when_the_broker_is_another_redis(settings) -> None:
    other = settings.model_copy(update={"broker_url": settings.redis_url.rsplit("/", 1)[0] + "/9"})
    elsewhere, same = JobQueue(other), JobQueue(settings)
    try:
        assert elsewhere.push("video_x", "m") is None
        assert same.push("video_x", "m") is not None
    finally:
        elsewhere.close()
        same.close()
