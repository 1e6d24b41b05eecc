"""Webhook delivery: Celery task ``wan.deliver_webhook`` on queue ``webhooks`` (never the GPU task).

One task run = one attempt. ``attempt_delivery`` (plain function, tested without Celery) signs the
message (Standard Webhooks, fresh timestamp, same ``webhook-id``), POSTs it through the SSRF guard
(checked and pinned address, no redirects, capped time and response size), records the attempt in
Redis and decides what happens next:

- 2xx → ``delivered``;
- 410 Gone → ``gone``, never retried;
- timeout / connection error / 429 / 5xx → retry after exponential backoff with jitter
  (``backoff_base_s * backoff_factor**(n-1)``, capped at ``backoff_max_s``, ±``jitter``),
  or after ``Retry-After`` when the receiver sends a longer one;
- anything else (3xx, other 4xx, a URL the SSRF guard now refuses) → ``failed`` at once;
- the retry budget is ``max_attempts`` attempts and ``max_total_s`` since the message was created;
  progress events get a single attempt (best effort), terminal events the full budget.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from celery import Celery, shared_task
from redis import Redis as SyncRedis

from app.core import webhooks as wh
from app.core.config import Settings
from app.core.ssrf import Resolver, SSRFError, safe_request, system_resolver
from app.core.webhook_sign import sign_headers

log = logging.getLogger(__name__)

USER_AGENT = "wanserve-webhooks/0.1"


@dataclass(frozen=True)
class Outcome:
    status: str  # delivered | retrying | gone | failed
    retry_in_s: float | None = None
    status_code: int | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(dt.timestamp() - current, 0.0)


def backoff_delay(attempt: int, cfg: wh.WebhookConfig, rng: random.Random | None = None) -> float:
    """Delay before attempt ``attempt + 1`` (``attempt`` is the 1-based number of the failed one)."""
    base = min(cfg.backoff_max_s, cfg.backoff_base_s * cfg.backoff_factor ** max(attempt - 1, 0))
    r = rng or random
    return max(0.0, base * (1.0 + r.uniform(-cfg.jitter, cfg.jitter)))


def _retryable(code: int) -> bool:
    return code == 429 or code == 408 or 500 <= code <= 599


def attempt_delivery(
    message: Mapping[str, Any],
    attempt: int,
    cfg: wh.WebhookConfig,
    redis: SyncRedis,
    *,
    resolver: Resolver = system_resolver,
    now: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> Outcome:
    """Perform attempt number ``attempt`` (1-based) of one message and record it."""
    msg_id = str(message["id"])
    body = str(message["body"]).encode()
    if attempt == 1:
        wh.record_created(redis, message)
    policy = cfg.egress()
    started = now()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        **sign_headers(msg_id, body, list(cfg.secrets), timestamp=int(started)),
    }
    code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    try:
        resp = safe_request(
            "POST", str(message["url"]), policy, headers=headers, content=body, resolver=resolver
        )
        code = resp.status_code
        retry_after = parse_retry_after(resp.headers.get("retry-after"), now=started)
    except SSRFError as exc:
        error = f"refused: {exc.reason}"
    except httpx.TimeoutException:
        error = "timeout"
    except httpx.HTTPError as exc:
        error = f"connection error: {type(exc).__name__}"
    duration_ms = int((now() - started) * 1000)

    persistent = bool(message.get("persistent", True))
    max_attempts = cfg.max_attempts if persistent else 1
    retry = (code is None and not (error or "").startswith("refused")) or (
        code is not None and _retryable(code)
    )
    if code is not None and 200 <= code <= 299:
        outcome = Outcome("delivered", status_code=code)
    elif code == 410:
        outcome = Outcome("gone", status_code=code)
    elif retry and attempt < max_attempts:
        delay = backoff_delay(attempt, cfg, rng)
        if retry_after is not None:
            delay = max(delay, retry_after)
        age = now() - float(message.get("created_at", started))
        if age + delay > cfg.max_total_s:
            outcome = Outcome("failed", status_code=code)
        else:
            outcome = Outcome("retrying", retry_in_s=delay, status_code=code)
    else:
        outcome = Outcome("failed", status_code=code)

    next_at = None if outcome.retry_in_s is None else now() + outcome.retry_in_s
    wh.record_attempt(
        redis,
        msg_id,
        {
            "attempt": attempt,
            "at": started,
            "status_code": code,
            "error": error,
            "duration_ms": duration_ms,
            "outcome": outcome.status,
        },
        status=outcome.status,
        next_attempt_at=next_at,
    )
    log.info(
        "webhook %s %s attempt %d → %s (%s)",
        msg_id,
        message.get("type"),
        attempt,
        outcome.status,
        code if code is not None else error,
    )
    return outcome


# --- Celery wiring -----------------------------------------------------------------------------

_config: wh.WebhookConfig | None = None
_redis: SyncRedis | None = None
_resolver: Resolver = system_resolver


def configure(cfg: wh.WebhookConfig, redis: SyncRedis, *, resolver: Resolver = system_resolver) -> None:
    """Install delivery settings and the Redis client (called once at worker start)."""
    global _config, _redis, _resolver
    _config, _redis, _resolver = cfg, redis, resolver


def _runtime() -> tuple[wh.WebhookConfig, SyncRedis]:
    global _config, _redis
    if _config is None or _redis is None:  # not configured at start: read the settings now
        from app.core.redisconn import sync_client

        settings = Settings()
        _config = wh.WebhookConfig.from_settings(settings)
        _redis = sync_client(settings)
    return _config, _redis


@shared_task(name=wh.TASK_NAME, bind=True, max_retries=None, ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
def deliver_webhook(self: Any, message: dict[str, Any]) -> str:
    cfg, redis = _runtime()
    outcome = attempt_delivery(message, int(self.request.retries) + 1, cfg, redis, resolver=_resolver)
    if outcome.retry_in_s is not None:
        raise self.retry(args=(message,), countdown=outcome.retry_in_s, queue=wh.QUEUE)
    return outcome.status


# --- the webhook worker process -----------------------------------------------------------------


def make_webhook_celery(settings: Settings) -> Celery:
    """A Celery app that consumes only the ``webhooks`` queue (threads pool; no GPU, no model)."""
    from app.core.celeryconf import celery_config
    from app.core.redisconn import sync_client

    app = Celery("wanserve-webhooks")
    conf = celery_config(settings)
    conf.update(task_default_queue=wh.QUEUE, task_time_limit=None, task_soft_time_limit=None)
    app.conf.update(conf)
    configure(wh.WebhookConfig.from_settings(settings), sync_client(settings))
    return app


def run_webhook_worker(settings: Settings, *, concurrency: int = 8, loglevel: str = "INFO") -> None:
    """Blocking: run the webhook delivery worker (``wanserve webhooks``)."""
    app = make_webhook_celery(settings)
    app.worker_main(
        [
            "worker",
            "-Q",
            wh.QUEUE,
            "-P",
            "threads",
            "-c",
            str(concurrency),
            "-l",
            loglevel,
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"webhooks@{settings.resolved_worker_id()}",
        ]
    )
