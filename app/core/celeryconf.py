"""Celery configuration shared by the worker (consumer) and the gateway (producer only).

Tuned for long GPU jobs (see README "Queue"): late acknowledgement, prefetch of one, a broker
visibility timeout above the longest queue wait + run, hard and soft time limits, no result
backend (the job store is the source of truth), one queue per model id (`keys.model_queue`).

Priorities (`app.core.priority`): the Redis transport keeps one list per ``priority_steps`` entry
and pops them in order in one ``BRPOP``, so the next job a worker takes is the highest waiting
priority. That holds only if a worker never holds a job it has not started: prefetch of one with
late acks (the running job's unacked message fills the one slot) and ``worker_disable_prefetch``
(never reserve more than the pool can run), so a high job sent while a worker is busy is not stuck
behind a low one the worker already reserved.
"""

from __future__ import annotations

from typing import Any

from app.core.config import Settings
from app.core.priority import BROKER_PRIORITY

GENERATE_TASK = "wan.generate"


def celery_config(settings: Settings) -> dict[str, Any]:
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "socket_timeout": settings.redis_timeout_s + 5.0,
        "priority_steps": sorted(set(BROKER_PRIORITY.values())),
    }
    return {
        "broker_url": settings.broker,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.redis_timeout_s,
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,  # a job that kills its worker is failed, not looped
        "worker_prefetch_multiplier": 1,
        "worker_disable_prefetch": True,
        "task_time_limit": settings.job_time_limit_s,
        "task_soft_time_limit": settings.soft_time_limit_s,
        "task_default_queue": f"model.{settings.model}",
        "task_create_missing_queues": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "worker_proc_alive_timeout": settings.model_load_timeout_s,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_pool_limit": 10,
        "enable_utc": True,
    }
