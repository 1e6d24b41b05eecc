"""`wanserve worker`: run one Celery worker for one model (one process per device)."""

from __future__ import annotations

from app.core import keys
from app.core.config import Settings
from app.core.logjson import setup_logging
from worker.celery_app import create_celery


def celery_worker_argv(settings: Settings, queues: list[str], *, pool: str) -> list[str]:
    """One process per device, one job at a time, no chatter between workers (they share Redis)."""
    return [
        "worker",
        "--queues",
        ",".join(queues),
        "--concurrency",
        "1",
        "--pool",
        pool,
        "-O",
        "fair",
        "--hostname",
        f"{settings.worker_id}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        settings.log_level,
    ]


def run_worker(settings: Settings, *, pool: str = "prefork", extra_queues: list[str] | None = None) -> None:
    settings = settings.model_copy(update={"worker_id": settings.resolved_worker_id()})
    setup_logging(settings.log_level, settings.log_format, "worker")
    app = create_celery(settings, pool=pool)
    queues = [keys.model_queue(settings.model), *(extra_queues or [])]
    argv = celery_worker_argv(settings, queues, pool=pool)
    app.worker_main(argv)


if __name__ == "__main__":
    run_worker(Settings())
