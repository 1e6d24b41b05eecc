"""Webhook events shared by the gateway and the workers: event names, messages, delivery log.

A job may carry ``webhook_url`` and ``webhook_events`` (subset of ``started``, ``progress``,
``completed``, ``failed``, ``cancelled``; default: the terminal three). Each job-store transition
that matches the filter becomes one *message*::

    {"id": "msg_…", "job_id", "url", "event": "completed", "type": "video.completed",
     "persistent": true, "created_at": <unix float>, "body": "<JSON text>"}

whose body is ``{"id": "msg_…", "object": "event", "type": "video.completed", "created_at": <unix int>,
"timestamp": "<ISO 8601>", "data": <video object>}``.
The body is fixed when the message is created, so every retry sends the same bytes under the same
``webhook-id`` (only ``webhook-timestamp`` and the signatures change). Messages are handed to the
Celery task ``wan.deliver_webhook`` on queue ``webhooks`` (``worker/webhooks.py``) by task name.

Delivery log in Redis (visible to the job's owner through ``GET /v1/videos/{id}/webhooks``):
``wanserve:webhooks:<job_id>`` (list of message ids), ``wanserve:webhook:<msg_id>`` (hash: id, job_id,
type, url, status, attempts, created_at, updated_at, next_attempt_at, last_status_code,
last_error) and ``wanserve:webhook:<msg_id>:attempts`` (list of JSON attempt records).
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis import Redis as SyncRedis
from redis.asyncio import Redis as AsyncRedis

from app.core import keys
from app.core.config import Settings
from app.core.ssrf import EgressPolicy
from app.core.webhook_sign import new_message_id, split_secrets

TASK_NAME = "wan.deliver_webhook"
QUEUE = "webhooks"
EVENTS: tuple[str, ...] = ("started", "progress", "completed", "failed", "cancelled")
DEFAULT_EVENTS: tuple[str, ...] = ("completed", "failed", "cancelled")
TERMINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})

LOG_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True)
class WebhookConfig:
    """Delivery settings (from ``WANSERVE_WEBHOOK_*``)."""

    secrets: tuple[str, ...] = ()
    allow_http: bool = False
    allow_private: bool = False
    timeout_s: float = 15.0
    max_response_bytes: int = 64 * 1024
    max_attempts: int = 10
    max_total_s: float = 24 * 3600.0
    backoff_base_s: float = 5.0
    backoff_factor: float = 4.0
    backoff_max_s: float = 4 * 3600.0
    jitter: float = 0.2
    progress_interval_s: float = 1.0
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        secret = settings.webhook_secret
        return cls(
            secrets=tuple(split_secrets(secret.get_secret_value() if secret is not None else "")),
            allow_http=settings.webhook_allow_http,
            allow_private=settings.webhook_allow_private,
            timeout_s=settings.webhook_timeout_s,
            max_attempts=settings.webhook_max_attempts,
            max_total_s=settings.webhook_max_total_s,
            backoff_base_s=settings.webhook_backoff_base_s,
            backoff_factor=settings.webhook_backoff_factor,
            backoff_max_s=settings.webhook_backoff_max_s,
            progress_interval_s=settings.webhook_progress_interval_s,
        )

    def egress(self) -> EgressPolicy:
        """The SSRF guard's policy for delivering to the receivers."""
        return EgressPolicy(
            allow_http=self.allow_http,
            allow_private=self.allow_private,
            timeout_s=self.timeout_s,
            max_response_bytes=self.max_response_bytes,
        )


def normalize_events(events: Iterable[str] | str | None) -> tuple[str, ...]:
    """Validate an event filter; ``None``/empty → the default terminal events."""
    if events is None:
        return DEFAULT_EVENTS
    items = [e.strip() for e in (events.split(",") if isinstance(events, str) else events) if e.strip()]
    if not items:
        return DEFAULT_EVENTS
    bad = [e for e in items if e not in EVENTS]
    if bad:
        raise ValueError(f"unknown webhook event(s) {', '.join(bad)}; allowed: {', '.join(EVENTS)}")
    return tuple(e for e in EVENTS if e in items)


def iso_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat().replace("+00:00", "Z")


def build_message(job_id: str, url: str, event: str, data: Mapping[str, Any]) -> dict[str, Any]:
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    kind = f"video.{event}"
    msg_id = new_message_id()
    created = time.time()
    # `id` (= the webhook-id header) and integer `created_at` are OpenAI's event fields: they let
    # `client.webhooks.unwrap` parse the body and receivers deduplicate redeliveries by event id
    envelope = {
        "id": msg_id,
        "object": "event",
        "type": kind,
        "created_at": int(created),
        "timestamp": iso_now(),
        "data": data,
    }
    body = json.dumps(envelope, separators=(",", ":"), default=str)
    return {
        "id": msg_id,
        "job_id": job_id,
        "url": url,
        "event": event,
        "type": kind,
        "persistent": event != "progress",
        "created_at": created,
        "body": body,
    }


SendTask = Callable[..., Any]


def enqueue(send_task: SendTask, message: Mapping[str, Any]) -> None:
    """Hand a message to the webhook queue by task name (``celery_app.send_task``)."""
    send_task(TASK_NAME, args=(dict(message),), queue=QUEUE)


def progress_allowed(redis: SyncRedis, job_id: str, interval_s: float) -> bool:
    """Throttle progress events: at most one per ``interval_s`` per job (best effort)."""
    if interval_s <= 0:
        return True
    return bool(redis.set(keys.webhook_throttle(job_id), "1", nx=True, px=max(int(interval_s * 1000), 1)))


# --- delivery log: written by the webhook worker (sync), read by the gateway (async) -------------


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def record_created(redis: SyncRedis, message: Mapping[str, Any]) -> bool:
    """Create the log entry on the first attempt; False if it already exists (a retry/redelivery)."""
    key = keys.webhook_message(str(message["id"]))
    created = redis.hsetnx(key, "id", str(message["id"]))
    if not created:
        return False
    now = time.time()
    pipe = redis.pipeline(transaction=True)
    pipe.hset(
        key,
        mapping={
            "job_id": str(message["job_id"]),
            "type": str(message["type"]),
            "url": str(message["url"]),
            "status": "pending",
            "attempts": "0",
            "created_at": str(message.get("created_at", now)),
            "updated_at": str(now),
        },
    )
    pipe.expire(key, LOG_TTL_S)
    pipe.rpush(keys.webhook_log(str(message["job_id"])), str(message["id"]))
    pipe.expire(keys.webhook_log(str(message["job_id"])), LOG_TTL_S)
    pipe.execute()
    return True


def record_attempt(
    redis: SyncRedis,
    msg_id: str,
    attempt: Mapping[str, Any],
    *,
    status: str,
    next_attempt_at: float | None,
) -> None:
    key = keys.webhook_message(msg_id)
    pipe = redis.pipeline(transaction=True)
    pipe.rpush(keys.webhook_attempts(msg_id), json.dumps(dict(attempt), separators=(",", ":")))
    pipe.expire(keys.webhook_attempts(msg_id), LOG_TTL_S)
    pipe.hincrby(key, "attempts", 1)
    pipe.hincrby(keys.METRICS_WEBHOOKS, status, 1)  # Prometheus, by outcome (app.core.metrics)
    pipe.hset(
        key,
        mapping={
            "status": status,
            "updated_at": str(time.time()),
            "next_attempt_at": "" if next_attempt_at is None else str(next_attempt_at),
            "last_status_code": "" if attempt.get("status_code") is None else str(attempt["status_code"]),
            "last_error": str(attempt.get("error") or ""),
        },
    )
    pipe.execute()


def _decode_entry(raw: Mapping[Any, Any], attempts: list[Any]) -> dict[str, Any]:
    rec = {_s(k): _s(v) for k, v in raw.items()}

    def num(name: str) -> float | None:
        v = rec.get(name, "")
        return float(v) if v else None

    code = rec.get("last_status_code", "")
    return {
        "id": rec.get("id", ""),
        "object": "webhook.delivery",
        "type": rec.get("type", ""),
        "url": rec.get("url", ""),
        "status": rec.get("status", ""),
        "attempt_count": int(rec.get("attempts", "0") or 0),
        "created_at": num("created_at"),
        "updated_at": num("updated_at"),
        "next_attempt_at": num("next_attempt_at"),
        "last_status_code": int(code) if code else None,
        "last_error": rec.get("last_error") or None,
        "attempts": [json.loads(_s(a)) for a in attempts],
    }


def list_deliveries_sync(redis: SyncRedis, job_id: str) -> list[dict[str, Any]]:
    out = []
    for mid in redis.lrange(keys.webhook_log(job_id), 0, -1):
        raw = redis.hgetall(keys.webhook_message(_s(mid)))
        if raw:
            out.append(_decode_entry(raw, list(redis.lrange(keys.webhook_attempts(_s(mid)), 0, -1))))
    return out


async def list_deliveries(redis: AsyncRedis, job_id: str) -> list[dict[str, Any]]:
    """Every delivery for one job, oldest first, each with its attempts."""
    out = []
    for mid in await redis.lrange(keys.webhook_log(job_id), 0, -1):
        raw = await redis.hgetall(keys.webhook_message(_s(mid)))
        if raw:
            attempts = await redis.lrange(keys.webhook_attempts(_s(mid)), 0, -1)
            out.append(_decode_entry(raw, list(attempts)))
    return out


def event_name(event_type: str) -> str | None:
    """``video.completed`` → ``completed`` when it is a webhook event, else None."""
    name = event_type.removeprefix("video.")
    return name if name in EVENTS else None


def wants(webhook_url: str | None, webhook_events: list[str] | None, event: str) -> bool:
    return bool(webhook_url) and event in (webhook_events or DEFAULT_EVENTS)
