"""`wanserve worker`: run one Celery worker for one model (one process, or a group: `worker.group`)."""

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


def check_worker_files(settings: Settings) -> None:
    """Refuse to start on a bad optional weights file: a pool child that fails loading it is only
    logged by Celery, and the worker would then take jobs it cannot run."""
    if settings.interpolator_weights is not None:
        from model.interpolator import read_checkpoint
        from model.loading import CheckpointError

        try:
            read_checkpoint(settings.interpolator_weights)
        except CheckpointError as exc:
            raise SystemExit(f"wanserve worker: WANSERVE_INTERPOLATOR_WEIGHTS: {exc}") from exc


def start_worker(settings: Settings, *, pool: str = "prefork", extra_queues: list[str] | None = None) -> int:
    """`wanserve worker`: one process, or a worker group when ``settings.devices`` names several."""
    from worker.group import shape_of, supervise

    try:
        shape = shape_of(settings)
    except ValueError as exc:
        raise SystemExit(f"wanserve worker: {exc}") from None
    if shape is None:
        run_worker(settings, pool=pool, extra_queues=extra_queues)
        return 0
    settings = settings.model_copy(update={"worker_id": settings.resolved_worker_id()})
    setup_logging(settings.log_level, settings.log_format, "worker-group")
    check_worker_files(settings)
    return supervise(settings, shape, extra_queues or [])


def run_worker(
    settings: Settings, *, pool: str = "prefork", extra_queues: list[str] | None = None, preload: bool = False
) -> None:
    """``preload``: load the model before Celery starts (solo pool), so that a failure to load ends
    the process (Celery only logs an exception raised in its ``worker_init`` signal)."""
    settings = settings.model_copy(update={"worker_id": settings.resolved_worker_id()})
    setup_logging(settings.log_level, settings.log_format, "worker")
    check_worker_files(settings)
    app = create_celery(settings, pool=pool)
    if preload:
        from worker.runtime import init_runtime

        init_runtime(settings)  # the worker_init signal then finds it loaded
    queues = [keys.model_queue(settings.model), *(extra_queues or [])]
    argv = celery_worker_argv(settings, queues, pool=pool)
    app.worker_main(argv)


if __name__ == "__main__":
    raise SystemExit(start_worker(Settings()))
