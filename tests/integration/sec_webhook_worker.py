"""A minimal Celery app for the webhook-delivery tests (the real worker wiring lives in worker/)."""

from __future__ import annotations

import os

from celery import Celery
from redis import Redis

import worker.webhooks as delivery
from app.core.webhooks import QUEUE, WebhookConfig

broker = os.environ["SEC_BROKER"]
app = Celery("sec-webhooks", broker=broker)
app.conf.update(
    task_default_queue=QUEUE, broker_connection_retry_on_startup=True, worker_hijack_root_logger=False
)
delivery.configure(
    WebhookConfig(
        secrets=tuple(os.environ["SEC_SECRETS"].split(",")),
        allow_http=True,
        allow_private=True,
        timeout_s=2.0,
        max_attempts=5,
        backoff_base_s=0.4,
        backoff_factor=2.0,
        jitter=0.1,
    ),
    Redis.from_url(broker),
)
