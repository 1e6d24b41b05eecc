"""Poisoned input never stored, never a 500, against a real gateway + Redis.

Every request below answered 500 (or was stored and broke GET/list for everyone) before: a lone
surrogate or deep nesting in ``metadata``, a body or ``style`` nested 100k deep, conflicting form
field names, non-string ``webhook_events``, a non-ASCII signed-URL ``sig``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.reliability_support import Stack, open_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = open_stack(
        tmp_path_factory.mktemp("sec-poison"), webhook_secret="whsec_poison", webhook_allow_http=True
    )
    s.worker()  # a served model: refusals below are about the input, not "no worker"
    yield s
    s.close()


def _no_job_stored(stack: Stack) -> None:
    assert not list(stack.redis.client().scan_iter("wanserve:job:*"))
    r = stack.client.get("/v1/videos")
    assert r.status_code == 200 and r.json()["data"] == []


def _deep(n: int) -> str:
    return "[" * n + "]" * n


HOOK = '"webhook_url": "http://example.com/h"'
JSON_BODIES = {
    "lone surrogate in metadata": '{"prompt": "p", "metadata": {"k": "\\ud800"}}',
    "lone surrogate in prompt": '{"prompt": "p\\udc00"}',
    "nested metadata": '{"prompt": "p", "metadata": {"k": ' + '{"a":' * 300 + "1" + "}" * 300 + "}}",
    "non-string metadata": '{"prompt": "p", "metadata": {"k": 5}}',
    "too many metadata pairs": '{"prompt": "p", "metadata": {'
    + ",".join(f'"k{i}": "v"' for i in range(17))
    + "}}",
    "long metadata key": '{"prompt": "p", "metadata": {"' + "k" * 65 + '": "v"}}',
    "body nested 100k deep": '{"prompt": "p", "x": ' + _deep(100_000) + "}",
    "top level nested 100k deep": _deep(100_000),
    "style string nested 100k deep": '{"prompt": "p", "style": "' + _deep(100_000) + '"}',
    "webhook_events [1]": '{"prompt": "p", ' + HOOK + ', "webhook_events": [1]}',
    "webhook_events [null]": '{"prompt": "p", ' + HOOK + ', "webhook_events": [null]}',
    "webhook_events 5": '{"prompt": "p", ' + HOOK + ', "webhook_events": 5}',
    "webhook_events true": '{"prompt": "p", ' + HOOK + ', "webhook_events": true}',
    "webhook_events object": '{"prompt": "p", ' + HOOK + ', "webhook_events": {"a": 1}}',
    "webhook_url fec0::/10": '{"prompt": "p", "webhook_url": "https://[fec0::1]/h"}',
}


@pytest.mark.parametrize("name", list(JSON_BODIES))
def test_poisoned_json_bodies_are_validation_errors_and_store_nothing(stack: Stack, name: str) -> None:
    body = JSON_BODIES[name]
    r = stack.client.post("/v1/videos", content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 400, (name, r.status_code, r.text[:300])
    assert "not served" not in r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    _no_job_stored(stack)


FORMS = {
    "prompt then prompt[]": "prompt=x&prompt[]=y",
    "metadata[a] then metadata[]": "prompt=x&metadata[a]=1&metadata[]=2",
    "metadata[a] then metadata": "prompt=x&metadata[a]=1&metadata=2",
    "style nested": "prompt=x&style=" + quote(_deep(50_000)),
}


@pytest.mark.parametrize("name", list(FORMS))
def test_conflicting_form_fields_are_validation_errors(stack: Stack, name: str) -> None:
    ctype = "application/x-www-form-urlencoded"
    r = stack.client.post("/v1/videos", content=FORMS[name].encode(), headers={"content-type": ctype})
    assert r.status_code == 400, (name, r.status_code, r.text[:300])
    assert "not served" not in r.text
    _no_job_stored(stack)


def test_flat_string_metadata_is_still_accepted(stack: Stack) -> None:
    meta = {f"k{i}": "v" * 200 for i in range(15)} | {"k" * 64: "v" * 512}
    r = stack.client.post("/v1/videos", json={"prompt": "ok", "metadata": meta})
    assert r.status_code == 202, r.text
    vid = r.json()["id"]
    assert stack.client.get(f"/v1/videos/{vid}").json()["metadata"] == meta
    stack.wait(vid, {"completed"}, timeout=120)
    assert stack.client.delete(f"/v1/videos/{vid}").status_code == 200


def test_signed_url_with_non_ascii_sig_is_403(stack: Stack) -> None:
    exp = int(time.time()) + 60
    r = stack.client.get(f"/v1/files/jobs/x/video.mp4?expires={exp}&sig=" + quote("é" * 10))
    assert r.status_code == 403, r.text
