"""Gateway security: API-key auth, rate limits, CORS, body-size cap, submission admission.

`install_security(app, settings)` (called once by `create_app`) sets ``app.state.authenticate``
(read by `app.api.deps.current_owner`), adds the CORS and body-size middlewares and logs a loud
warning when auth is off. `admit_create` runs before a job is created: webhook URL + event filter
(SSRF guard → 400), ``Idempotency-Key`` (replay → the same job, different body → 400), and returns
the per-job admission callback that enforces the active-jobs and global queue limits (429).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.deps import get_state
from app.api.state import AppState
from app.core.apikeys import ANONYMOUS_OWNER, ApiKeyStore, parse_bearer
from app.core.config import Settings
from app.core.errors import FieldError, InvalidInput, ServiceError
from app.core.idempotency import IdempotencyStore, Reservation, fingerprint
from app.core.jobstore_async import AsyncJobStore
from app.core.ratelimit import RateLimiter, SlotClaim
from app.core.schemas import JobRecord
from app.core.ssrf import EgressPolicy, check_url
from app.core.webhooks import normalize_events

log = logging.getLogger("wanserve.security")


class Unauthorized(ServiceError):
    status, title, type_slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers = {"WWW-Authenticate": 'Bearer realm="wanserve"'}


class BodyTooLarge(ServiceError):
    status, title, type_slug = 413, "Request body too large", "too-large"


async def authenticate(request: Request) -> str | None:
    """The caller's API key id (401 without a valid key); None while auth is off."""
    state = get_state(request)
    if not state.settings.auth_enabled:
        return None
    token = parse_bearer(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized("missing bearer API key (Authorization: Bearer wsk_…)")
    key = await ApiKeyStore(state.redis, state.mux).authenticate(token)
    if key is None:
        raise Unauthorized("invalid or revoked API key")
    request.state.api_key_admin = key.admin
    request.state.priority_limit = key.priority_limit(state.settings.max_priority)
    decision = await state.limiter.hit(key.id)
    request.state.ratelimit_headers = decision.headers
    return key.id


class _SecurityHeaders:
    """Pure ASGI: caps the request body (413) and adds rate-limit headers to responses."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_too_large(scope, self.max):
            await send_too_large(send, self.max)
            return
        capped_receive = capped(receive, self.max)

        async def send_with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                extra = ratelimit_headers(scope)
                if extra:
                    msg = {**msg, "headers": [*msg.get("headers", []), *extra]}
            await send(msg)

        await self.app(scope, capped_receive, send_with_headers)


def declared_too_large(scope: Scope, max_bytes: int) -> bool:
    """The request's ``Content-Length`` says more than ``max_bytes``."""
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            return value.isdigit() and int(value) > max_bytes
    return False


def capped(receive: Receive, max_bytes: int) -> Receive:
    """``receive`` that raises `BodyTooLarge` (413) once the body read so far passes ``max_bytes``
    (a chunked body declares no length)."""
    seen = 0

    async def capped_receive() -> Message:
        nonlocal seen
        msg = await receive()
        if msg["type"] == "http.request":
            seen += len(msg.get("body", b""))
            if seen > max_bytes:
                raise BodyTooLarge(f"request body larger than {max_bytes} bytes")
        return msg

    return capped_receive


def ratelimit_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The rate-limit headers authentication left on the request's state, as raw header pairs."""
    extra = (scope.get("state") or {}).get("ratelimit_headers") or {}
    return [(k.lower().encode(), str(v).encode()) for k, v in extra.items()]


async def send_too_large(send: Send, max_bytes: int) -> None:
    await _send_problem(send, 413, f"request body larger than {max_bytes} bytes")


async def _send_problem(send: Send, status: int, detail: str) -> None:
    import json

    body = json.dumps(
        {
            "type": "/problems/too-large",
            "title": "Request body too large",
            "status": status,
            "detail": detail,
            "errors": [],
            "message": f"Request body too large: {detail}",
            "error": {
                "message": f"Request body too large: {detail}",
                "type": "request_too_large",  # = openai_type(413)
                "param": None,
                "code": "too_large",
            },
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-should-retry", b"false"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def cors_origins(settings: Settings) -> list[str]:
    return [o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()]


def install_security(app: FastAPI, settings: Settings) -> None:
    app.state.authenticate = authenticate
    origins = cors_origins(settings)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials="*" not in origins,  # never credentials with a wildcard origin
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=[
                "Retry-After",
                "RateLimit",
                "RateLimit-Policy",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "openai-poll-after-ms",
                "Idempotent-Replayed",
                "Location",
            ],
            max_age=600,
        )
    app.add_middleware(_SecurityHeaders, max_body_bytes=settings.max_body_bytes)
    if not settings.auth_enabled:
        banner = "!" * 78
        log.warning(
            "\n%s\n!! AUTH IS OFF (WANSERVE_AUTH=false): anyone who can reach this port can submit,\n"
            "!! read and delete every job. Use only on a trusted machine; set WANSERVE_AUTH=true\n"
            "!! and create keys with `wanserve keys create --name NAME` for anything shared.\n%s",
            banner,
            banner,
        )


# --- submission admission ---------------------------------------------------------------------


@dataclass
class Admission:
    """What `admit_create` decided; call `complete`/`abandon` after the job was (not) created."""

    replay: JobRecord | None
    admit: Callable[[str], Awaitable[None]]
    reservation: Reservation | None = None
    idem: IdempotencyStore | None = None
    # what `admit` does, for a create script that reserves the slot as it writes the job
    claim: tuple[SlotClaim, RateLimiter] | None = None

    async def complete(self, job_id: str) -> None:
        if self.idem is not None and self.reservation is not None and self.replay is None:
            await self.idem.complete(self.reservation, job_id)

    async def abandon(self) -> None:
        if self.idem is not None and self.reservation is not None:
            await self.idem.abandon(self.reservation)


def webhook_policy(settings: Settings) -> EgressPolicy:
    return EgressPolicy(
        allow_http=settings.webhook_allow_http,
        allow_private=settings.webhook_allow_private,
        timeout_s=settings.webhook_timeout_s,
    )


async def validate_webhook(body: dict[str, Any], settings: Settings) -> None:
    """Check ``webhook_url`` with the SSRF guard and normalise ``webhook_events`` (in place)."""
    url = body.get("webhook_url")
    events = body.get("webhook_events")
    if events is not None and not (
        isinstance(events, str) or (isinstance(events, list) and all(isinstance(e, str) for e in events))
    ):  # 5, true, {"a": 1}, [1], [null]: an error, never silently the defaults
        raise InvalidInput.field("webhook_events", "must be a list of event names or a comma-separated text")
    if url is None or url == "":
        body.pop("webhook_url", None)
        if events not in (None, "", []):
            raise InvalidInput.field("webhook_events", "needs a webhook_url")
        body.pop("webhook_events", None)
        return
    if not isinstance(url, str):
        raise InvalidInput.field("webhook_url", "must be a string")
    if settings.webhook_secret is None:
        raise InvalidInput.field(
            "webhook_url", "webhooks are not enabled on this server (no WANSERVE_WEBHOOK_SECRET)"
        )
    try:
        body["webhook_events"] = list(normalize_events(events))
    except ValueError as exc:
        raise InvalidInput(
            "webhook_events: " + str(exc), errors=[FieldError("webhook_events", str(exc))]
        ) from None
    await asyncio.to_thread(check_url, url, webhook_policy(settings))


async def admit_create(
    state: AppState,
    body: dict[str, Any],
    image: bytes | None,
    *,
    owner: str | None,
    idempotency_key: str | None,
) -> Admission:
    """``body`` and ``image`` as sent: the Idempotency-Key fingerprint covers them."""
    settings = state.settings
    raw_body = dict(body)
    await validate_webhook(body, settings)
    limiter = state.limiter
    scope_owner = owner or ANONYMOUS_OWNER

    async def admit(job_id: str) -> None:
        if owner is None:  # auth off: only the global queue cap applies
            await limiter.reserve_job(ANONYMOUS_OWNER, job_id, per_key=False)
        else:
            await limiter.reserve_job(owner, job_id)

    claim = (limiter.slot_claim(owner or ANONYMOUS_OWNER, per_key=owner is not None), limiter)

    key = idempotency_key
    if key is None:
        return Admission(replay=None, admit=admit, claim=claim)
    idem = IdempotencyStore(state.redis, ttl_s=settings.idempotency_ttl_s)
    fp = fingerprint(raw_body, image)
    res = await idem.begin(scope_owner, key, fp)
    if res.existing_job_id is not None:
        rec = await _visible(state.store, res.existing_job_id, owner)
        if rec is not None:
            return Admission(replay=rec, admit=admit, reservation=res, idem=idem, claim=claim)
        await state.redis.delete(res.redis_key)  # the earlier job was deleted: start afresh
        res = await idem.begin(scope_owner, key, fp)
    return Admission(replay=None, admit=admit, reservation=res, idem=idem, claim=claim)


async def _visible(store: AsyncJobStore, job_id: str, owner: str | None) -> JobRecord | None:
    rec = await store.get(job_id)
    if rec is None or (owner is not None and rec.owner != owner):
        return None
    return rec
