"""An upload that keeps failing fails the job with `storage_error`, never a completed job without its file."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from app.core import keys
from app.core.config import Settings
from app.core.jobstore import JobStore, encode_fields, pairs_to_dict
from app.core.redisconn import sync_client
from app.core.schemas import JobRecord, ResolvedParams
from app.core.status import JobStatus
from app.core.storage_s3 import S3Config, S3Storage
from tests.sec_support import free_port
from worker.execute import run_job


class Runtime(SimpleNamespace):
    def set_busy(self, job_id: str | None) -> None:
        pass

    def free_device_memory(self) -> None:
        pass


class FakePipe:
    def generate(self, prompt: str, **kw: Any) -> Any:
        import torch

        return torch.zeros(3, kw["num_frames"], kw["height"], kw["width"])


class UnreachableS3(S3Storage):
    def exists(self, key: str) -> bool:  # nothing stored yet; the upload is what fails
        return False


def test_upload_failure_fails_job_with_storage_error(redis_url: str, tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "t")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "t")
    settings = Settings(redis_url=redis_url, data_dir=tmp_path)
    store = JobStore(sync_client(settings), retention_s=60)
    storage = UnreachableS3(
        S3Config(
            bucket="b",
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            region="us-east-1",
            path_style=True,
            upload_attempts=2,
            retry_backoff_s=0.01,
            connect_timeout_s=0.5,
        )
    )
    rt = Runtime(
        settings=settings, store=store, storage=storage, worker_id="w", pipe=FakePipe(), extender=None
    )
    params = ResolvedParams(
        width=32,
        height=32,
        num_frames=5,
        fps=16,
        num_inference_steps=2,
        guidance_scale=[5.0],
        shift=5.0,
        sampler="unipc",
        seed=1,
    )
    rec = JobRecord(
        id=f"video_s{time.monotonic_ns()}",
        status=JobStatus.QUEUED,
        model="m",
        prompt="p",
        params=params,
        created_at=time.time(),
    )
    store.r.hset(keys.job(rec.id), mapping=pairs_to_dict(encode_fields(rec.model_dump())))
    assert run_job(rt, rec.id) == "failed"  # type: ignore[arg-type]
    got = store.get(rec.id)
    assert got is not None and got.status is JobStatus.FAILED
    assert got.error is not None and got.error.code == "storage_error" and not got.assets
