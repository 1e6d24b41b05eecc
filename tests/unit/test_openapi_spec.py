"""The committed openapi/openapi.json equals what the app serves; every route is documented."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "openapi" / "openapi.json"


def _exporter() -> Any:
    spec = importlib.util.spec_from_file_location("export_openapi", ROOT / "scripts" / "export_openapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    spec: dict[str, Any] = _exporter().build_spec()
    return spec


def test_committed_spec_matches_the_app(served: dict[str, Any]) -> None:
    exporter = _exporter()
    assert COMMITTED.exists(), "openapi/openapi.json missing: run scripts/export_openapi.py"
    committed = json.loads(COMMITTED.read_text())
    if committed != served:
        changed = sorted(
            set(committed.get("paths", {})) ^ set(served.get("paths", {}))
            or {p for p in served.get("paths", {}) if committed["paths"].get(p) != served["paths"][p]}
            or {"components/info"}
        )
        pytest.fail(
            f"openapi/openapi.json differs from the app ({', '.join(changed)}): "
            "run `.venv/bin/python scripts/export_openapi.py` and commit the result"
        )
    assert COMMITTED.read_text() == exporter.render(served), "formatting drift: re-export the file"


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _has_example(obj: Any) -> bool:
    if isinstance(obj, dict):
        if "example" in obj or obj.get("examples"):
            return True
        return any(_has_example(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_example(v) for v in obj)
    return False


def test_every_route_has_summary_examples_and_errors(served: dict[str, Any]) -> None:
    problems = []
    for method, path, op in _operations(served):
        name = f"{method} {path}"
        if not op.get("summary"):
            problems.append(f"{name}: no summary")
        if not op.get("description"):
            problems.append(f"{name}: no description")
        responses = op.get("responses", {})
        ok = [s for s in responses if s.startswith("2")]
        if not ok or not any(_has_example(responses[s]) or s == "204" for s in ok):
            problems.append(f"{name}: no success response example")
        if "requestBody" in op and not _has_example(op["requestBody"]):
            problems.append(f"{name}: no request example")
        errors = [s for s in responses if s[0] in "45"]
        if path not in {"/healthz", "/v1/loras"} and not errors:  # these cannot fail: no key, no Redis
            problems.append(f"{name}: no documented error responses")
        for status in errors:
            if not _has_example(responses[status]):
                problems.append(f"{name}: error {status} has no example")
    assert not problems, "\n".join(problems)


def test_errors_are_problem_json(served: dict[str, Any]) -> None:
    assert "Problem" in served["components"]["schemas"]
    for method, path, op in _operations(served):
        for status, resp in op["responses"].items():
            if status[0] in "45" and not (path == "/readyz" and status == "503"):
                assert "application/problem+json" in resp.get("content", {}), f"{method} {path} {status}"
