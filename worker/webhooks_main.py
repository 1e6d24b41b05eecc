"""`python -m worker.webhooks_main`: the webhook delivery worker (used by `wanserve serve`)."""

from __future__ import annotations

from app.core.config import Settings
from worker.webhooks import run_webhook_worker

if __name__ == "__main__":
    settings = Settings()
    run_webhook_worker(settings, loglevel=settings.log_level)
