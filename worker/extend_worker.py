"""`python -m worker.extend_worker`: prompt extension on its own CPU queue (``prompt_extend``).

Used when the gateway runs with ``WANSERVE_PROMPT_EXTEND_QUEUE=true``: jobs that ask for
extension are first queued here as ``wan.prompt_extend(job_id)``. This worker loads the chat LLM
once (``WANSERVE_PROMPT_EXTEND_MODEL_PATH``, required), announces itself in Redis
(`app.core.extenders`), and for each job rewrites the prompt into the job record (or records why
it kept the original) and then enqueues ``wan.generate`` on the model's queue. It never loads the
video model, so the GPU workers stay free of the LLM. Solo pool, one job at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, current_app, signals

from app.core import keys
from app.core.background import Loop, every
from app.core.celeryconf import GENERATE_TASK, celery_config
from app.core.config import Settings
from app.core.effects import build_job_store
from app.core.extenders import EXTEND_QUEUE, EXTEND_TASK, publish_extender, remove_extender
from app.core.jobstore import JobStore
from app.core.logjson import setup_logging
from app.core.priority import BROKER_PRIORITY
from app.core.redisconn import sync_client
from app.core.storage import make_storage
from worker.main import celery_worker_argv
from worker.prompt_extend import PromptExtender, load_extender, prepare_job_prompt

log = logging.getLogger(__name__)

SendTask = Callable[..., Any]


class ExtendRuntime:
    """The loaded LLM, the job store and a heartbeat thread of one extension worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = settings.resolved_worker_id()
        self.redis = sync_client(settings)
        storage = make_storage(settings)  # the effects of a change here are those of any other process
        self.store: JobStore = build_job_store(
            settings, self.redis, storage=storage, send_task=current_app.send_task
        )
        self.extender: PromptExtender | None = None
        self._beating: Loop | None = None

    def load(self) -> None:
        if self.settings.torch_threads:
            import torch

            torch.set_num_threads(self.settings.torch_threads)
        self.extender = load_extender(self.settings)
        if self.extender is None:
            raise SystemExit("the extension worker needs a loadable WANSERVE_PROMPT_EXTEND_MODEL_PATH")
        self.heartbeat()
        interval = self.settings.heartbeat_interval_s
        self._beating = every(interval, self.heartbeat, name="wanserve-extender-heartbeat")

    def heartbeat(self) -> None:
        assert self.extender is not None
        publish_extender(
            self.redis, worker_id=self.worker_id, model=self.extender.name, ttl_s=self.settings.worker_ttl_s
        )

    def close(self) -> None:
        if self._beating is not None:
            self._beating.stop()
        try:
            remove_extender(self.redis, self.worker_id)
        except Exception:
            log.warning("could not deregister extension worker %s", self.worker_id)


def run_extension(rt: ExtendRuntime, job_id: str, send_task: SendTask) -> str:
    """Extend one job's prompt, then hand the job to its model's queue."""
    rec = rt.store.get(job_id)
    if rec is None:
        return "gone"
    if rec.status.is_terminal:
        return "skipped"  # cancelled while waiting here
    prompt, _ = prepare_job_prompt(rec, extender=rt.extender, store=rt.store)
    queue, priority = keys.model_queue(rec.model), BROKER_PRIORITY[rec.priority]
    send_task(GENERATE_TASK, args=(job_id,), task_id=job_id, queue=queue, priority=priority)
    log.info("job %s: prompt ready (%d chars), sent to %s", job_id, len(prompt), keys.model_queue(rec.model))
    return "handed_off"


def create_extend_celery(settings: Settings) -> Celery:
    app = Celery("wanserve-extender")
    app.conf.update(celery_config(settings))
    holder: dict[str, ExtendRuntime] = {}

    @app.task(name=EXTEND_TASK, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def prompt_extend(job_id: str) -> str:
        return run_extension(holder["rt"], job_id, app.send_task)

    def _load(**_: Any) -> None:
        rt = ExtendRuntime(settings)
        rt.load()
        holder["rt"] = rt

    def _unload(**_: Any) -> None:
        if "rt" in holder:
            holder.pop("rt").close()

    signals.worker_init.connect(_load, weak=False)
    signals.worker_shutdown.connect(_unload, weak=False)
    return app


def run_extend_worker(settings: Settings) -> None:
    settings = settings.model_copy(update={"worker_id": settings.resolved_worker_id()})
    setup_logging(settings.log_level, settings.log_format, "prompt-extend")
    app = create_extend_celery(settings)
    argv = celery_worker_argv(settings, [EXTEND_QUEUE], pool="solo")
    app.worker_main(argv)


if __name__ == "__main__":
    run_extend_worker(Settings())
