"""OpenAPI documentation for every route, kept in one place.

Routes stay short; :func:`apply_docs` (called once by the app factory after the routers are
included) fills in each route's summary, description, documented error responses (as
``application/problem+json`` with examples) and request/response examples, matched by method and
path. A route it does not know is left as it is, and ``tests/unit/test_openapi_spec.py`` fails on
any route that still lacks a summary, an example or its error responses.

The data lives beside it: `app.api.docs_routes` (the per-route table), `app.api.docs_examples`
(example objects) and `app.api.docs_problems` (the problem+json schema and error examples).
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI

from app.api.docs_problems import PROBLEM_EXAMPLES, PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA, problem_responses
from app.api.docs_routes import ROUTE_DOCS, RouteDoc

__all__ = [
    "PROBLEM_EXAMPLES",
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_SCHEMA",
    "ROUTE_DOCS",
    "RouteDoc",
    "apply_docs",
    "document_spec",
    "problem_responses",
    "route_key",
]

_PARAM = re.compile(r"\{[^}]*\}")


def route_key(method: str, path: str) -> tuple[str, str]:
    """(METHOD, path with every `{param}` written as `{}`)."""
    return method.upper(), _PARAM.sub("{}", path)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out.setdefault(key, value)
    return out


def _document_operation(op: dict[str, Any], doc: RouteDoc | None, method: str = "get") -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    success = {str(k): v for k, v in (doc.success if doc else {}).items()}
    if doc is not None:
        op["summary"] = doc.summary
        if not op.get("description"):
            op["description"] = doc.description
        for status, spec in success.items():
            responses[status] = _merge(responses.get(status, {}), spec)
        if doc.openapi_extra:
            op.update(_merge(op, doc.openapi_extra))
    if responses.pop("422", None) is not None:  # validation errors answer 400 (OpenAI's BadRequestError)
        responses.setdefault("400", {})
    errors = {int(s) for s in responses if s[:1] in "45" and s not in success}
    errors |= set(doc.errors if doc else ())
    if 401 in errors:  # every keyed route is rate limited per key, and Redis backs the limiter
        errors |= {429, 503}
    if method in {"post", "put", "patch"}:
        errors.add(413)  # the body cap applies before any route runs
    for code, problem in problem_responses(*sorted(e for e in errors if e in PROBLEM_EXAMPLES)).items():
        responses[str(code)] = problem  # problem+json replaces FastAPI's default HTTPValidationError
    if "401" in responses:
        op.setdefault("security", [{"bearerAuth": []}])


def _drop_unreferenced(spec: dict[str, Any], names: tuple[str, ...]) -> None:
    schemas = spec.get("components", {}).get("schemas", {})
    for name in names:
        if name not in schemas:
            continue
        rest = {k: v for k, v in schemas.items() if k not in names}
        text = json.dumps({"paths": spec.get("paths", {}), "schemas": rest})
        if f'"#/components/schemas/{name}"' not in text:
            del schemas[name]


def document_spec(
    spec: dict[str, Any], docs: dict[tuple[str, str], RouteDoc] | None = None
) -> dict[str, Any]:
    """Fill summaries, descriptions, examples and problem+json errors into an OpenAPI dict (in place)."""
    table = ROUTE_DOCS if docs is None else docs
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                _document_operation(op, table.get(route_key(method, path)), method)
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `wanserve keys create --name NAME` (when WANSERVE_AUTH is on).",
    }
    _hoist_defs(spec)
    _drop_unreferenced(spec, ("HTTPValidationError", "ValidationError"))
    return spec


def _hoist_defs(spec: dict[str, Any]) -> None:
    """Move pydantic's nested ``$defs`` into ``components/schemas`` so every ``$ref`` resolves.

    A JSON schema embedded in ``openapi_extra`` (e.g. the create body's ``style``) carries its own
    ``$defs`` and ``#/$defs/X`` references, which are relative to a document root that OpenAPI has
    not got; client generators fail on them."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            for name, sub in (node.pop("$defs", None) or {}).items():
                schemas.setdefault(name, walk(sub))
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
            for key, value in node.items():
                node[key] = walk(value)
        elif isinstance(node, list):
            return [walk(v) for v in node]
        return node

    spec["paths"] = walk(spec.get("paths", {}))
    for name in list(schemas):
        schemas[name] = walk(schemas[name])


def apply_docs(app: FastAPI, docs: dict[tuple[str, str], RouteDoc] | None = None) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json`` and ``/docs``) carry :data:`ROUTE_DOCS`."""
    original = app.openapi
    if getattr(original, "_wanserve_docs", False):
        return
    done: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        spec = original()  # FastAPI caches it and rebuilds it when the routes change
        if done.get("spec") is not spec:
            document_spec(spec, docs)
            done["spec"] = spec
        return spec

    openapi._wanserve_docs = True  # type: ignore[attr-defined]
    app.openapi = openapi  # type: ignore[method-assign]
