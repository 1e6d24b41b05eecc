"""An upload that keeps failing fails the job with `storage_error`, never a completed job without its file."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from app.core import keys
from app.core.config import Settings
from app.core.jobstore import JobStore, encode_fields, pairs_to_dict
from app.core.redisconn import sync_client
from app.core.status import JobStatus
from app.core.storage_s3 import S3Storage
from tests.record_support import tiny_record
from tests.sec_support import dead_s3_config
from worker.execute import run_job


class Runtime(SimpleNamespace):
    def set_busy(self, job_id: str | None) -> None:
        pass

    def free_device_memory(self, collect: bool = True) -> None:
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
    storage = UnreachableS3(dead_s3_config(retry_backoff_s=0.01))
    rt = Runtime(
        settings=settings,
        store=store,
        storage=storage,
        worker_id="w",
        pipe=FakePipe(),
        extender=None,
        interpolator=None,
    )
    rec = tiny_record(model="m")
    store.r.hset(keys.job(rec.id), mapping=pairs_to_dict(encode_fields(rec.model_dump())))
    assert run_job(rt, rec.id) == "failed"  # type: ignore[arg-type]
    got = store.get(rec.id)
    assert got is not None and got.status is JobStatus.FAILED
    assert got.error is not None and got.error.code == "storage_error" and not got.assets
