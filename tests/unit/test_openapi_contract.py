"""The committed spec is a contract for client generators: refs resolve, auth and limits are true."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.api.main import create_app
from app.core.config import Settings

SPEC: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "openapi" / "openapi.json").read_text()
)


def _ops() -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in SPEC["paths"].items() for m, op in ops.items()]


def test_every_ref_resolves() -> None:
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(SPEC)))
    schemas = SPEC["components"]["schemas"]
    assert refs and all(
        r.startswith("#/components/schemas/") and r.rsplit("/", 1)[1] in schemas for r in refs
    )


def test_models_is_public_and_keyed_routes_document_their_limits() -> None:
    assert "security" not in SPEC["paths"]["/v1/models"]["get"]
    for method, path, op in _ops():
        if "401" in op["responses"]:
            assert {"429", "503"} <= set(op["responses"]), (method, path)
        if method == "post":
            assert "413" in op["responses"], path
        assert "422" not in op["responses"], (method, path)  # validation answers 400


def test_sse_is_declared_as_an_event_stream() -> None:
    ok = SPEC["paths"]["/v1/videos/{video_id}/events"]["get"]["responses"]["200"]["content"]
    assert list(ok) == ["text/event-stream"]


def test_method_not_allowed_names_every_method_of_the_path() -> None:
    client = TestClient(create_app(Settings(redis_url="redis://127.0.0.1:1/0")))
    r = client.options("/v1/videos")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    assert r.headers["x-should-retry"] == "false" and r.json()["error"]["type"] == "invalid_request_error"
