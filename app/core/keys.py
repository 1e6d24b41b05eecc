"""Redis key names. Every key wanserve writes starts with ``wanserve:``."""

from __future__ import annotations

PREFIX = "wanserve:"
JOBS_INDEX = PREFIX + "jobs"  # zset: job id by created_at (ms), every job
WORKERS = PREFIX + "workers"  # zset: worker id by last heartbeat (unix s)
PRESETS = PREFIX + "presets"  # hash: model id -> its preset JSON, as last published
MODELS_SEEN = PREFIX + "models:seen"  # zset: model id by the last heartbeat of any of its workers


def job(job_id: str) -> str:
    """Hash: the job record, one field per `JobRecord` attribute (status raw, the rest JSON)."""
    return f"{PREFIX}job:{job_id}"


def events(job_id: str) -> str:
    """Stream: the job's events in order; stream ids are the SSE event ids."""
    return f"{PREFIX}job:{job_id}:events"


def cancel_flag(job_id: str) -> str:
    """String: present while a running job has been asked to stop."""
    return f"{PREFIX}job:{job_id}:cancel"


def owner_index(owner: str) -> str:
    """Zset: the jobs of one API key, like `JOBS_INDEX`."""
    return f"{PREFIX}jobs:owner:{owner}"


def queued(model_id: str) -> str:
    """Zset: queued job ids of one model by enqueue time; ZRANK is the queue position."""
    return f"{PREFIX}queued:{model_id}"


def worker(worker_id: str) -> str:
    """Hash with TTL: a live worker's model, preset JSON, state, current job, heartbeat."""
    return f"{PREFIX}worker:{worker_id}"


def model_queue(model_id: str) -> str:
    """The Celery queue of one model id."""
    return f"model.{model_id}"


def preview(job_id: str) -> str:
    """String with TTL: the running job's latest `video.preview` event data (JSON)."""
    return f"{PREFIX}job:{job_id}:preview"
