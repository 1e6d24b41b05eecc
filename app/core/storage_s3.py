"""S3-compatible storage backend (AWS S3, MinIO, Cloudflare R2, moto, ...) over boto3.

Selected with ``WANSERVE_STORAGE_URL=s3://BUCKET/PREFIX`` (plus ``WANSERVE_S3_ENDPOINT_URL`` for
non-AWS endpoints). Credentials come from the usual boto3 chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, shared config files, instance roles).

- The bucket stays private. Readers get presigned GET URLs minted on every request with a
  configurable lifetime (``url_ttl_s``, at most 7 days); no URL is ever stored.
- Uploads stream from a file on disk; above ``multipart_threshold`` they use multipart upload.
  Each upload is retried ``upload_attempts`` times with backoff; then ``S3StorageError`` is raised
  so the caller fails the job with a storage error instead of completing it without its file.
- Object keys are ``PREFIX/<key>``; keys are built by the service from job ids, never by clients.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from app.core.errors import NotFound, StorageError
from app.core.storage import content_type_for

log = logging.getLogger(__name__)

MAX_PRESIGN_TTL_S = 604800  # SigV4 limit: 7 days


class S3StorageError(StorageError):
    """Storage backend failure (upload, delete, presign) after retries."""


@dataclass(frozen=True)
class S3Config:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    path_style: bool = False
    url_ttl_s: int = 3600
    multipart_threshold: int = 16 * 1024 * 1024
    multipart_chunksize: int = 8 * 1024 * 1024
    upload_attempts: int = 3
    retry_backoff_s: float = 0.5
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0


def parse_storage_url(url: str) -> tuple[str, str] | None:
    """``s3://BUCKET/PREFIX`` → (bucket, prefix); None for a local path or ``file://`` URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3":
        return None
    bucket = parts.netloc
    if not bucket:
        raise ValueError("storage URL s3://BUCKET/PREFIX needs a bucket name")
    return bucket, parts.path.strip("/")


class S3Storage:
    """Private-bucket storage with presigned GET URLs."""

    kind = "s3"

    def __init__(self, config: S3Config, *, client: Any | None = None) -> None:
        if not 1 <= config.url_ttl_s <= MAX_PRESIGN_TTL_S:
            raise ValueError(f"url_ttl_s must be within 1..{MAX_PRESIGN_TTL_S}")
        self.config = config
        boto_cfg = BotoConfig(
            region_name=config.region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if config.path_style else "auto"},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=config.connect_timeout_s,
            read_timeout=config.read_timeout_s,
        )
        self._client: Any = client or boto3.session.Session().client(
            "s3", endpoint_url=config.endpoint_url, config=boto_cfg
        )
        self._transfer = TransferConfig(
            multipart_threshold=config.multipart_threshold,
            multipart_chunksize=config.multipart_chunksize,
            use_threads=True,
            max_concurrency=4,
        )

    @property
    def client(self) -> Any:
        return self._client

    def object_key(self, key: str) -> str:
        key = key.lstrip("/")
        if not key or ".." in key.split("/"):
            raise ValueError("invalid object key")
        return f"{self.config.prefix}/{key}" if self.config.prefix else key

    def _retry(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        last: Exception | None = None
        for attempt in range(1, self.config.upload_attempts + 1):
            try:
                return fn(*args, **kwargs)
            except (BotoCoreError, ClientError, OSError) as exc:
                last = exc
                log.warning(
                    "s3 %s failed (attempt %d/%d): %s", what, attempt, self.config.upload_attempts, exc
                )
                if attempt < self.config.upload_attempts:
                    time.sleep(self.config.retry_backoff_s * 2 ** (attempt - 1))
        raise S3StorageError(
            f"s3 {what} failed after {self.config.upload_attempts} attempts: {last}"
        ) from last

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> str:
        """Stream ``path`` to ``key`` (multipart above the threshold); returns the object key."""
        obj = self.object_key(key)
        extra = {"ContentType": content_type or content_type_for(key)}
        self._retry(
            "upload",
            self._client.upload_file,
            str(path),
            self.config.bucket,
            obj,
            ExtraArgs=extra,
            Config=self._transfer,
        )
        return obj

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        obj = self.object_key(key)
        self._retry(
            "upload",
            self._client.put_object,
            Bucket=self.config.bucket,
            Key=obj,
            Body=data,
            ContentType=content_type or content_type_for(key),
        )
        return obj

    def get_bytes(self, key: str) -> bytes:
        try:
            resp = self._client.get_object(Bucket=self.config.bucket, Key=self.object_key(key))
            data: bytes = resp["Body"].read()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                raise NotFound(f"no object {key!r}") from None
            raise S3StorageError(f"s3 get failed: {exc}") from exc
        except BotoCoreError as exc:
            raise S3StorageError(f"s3 get failed: {exc}") from exc
        return data

    def local_path(self, key: str) -> Path | None:
        """Never local: the gateway redirects to a presigned URL instead of streaming."""
        return None

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.config.bucket, Key=self.object_key(key))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise S3StorageError(f"s3 head failed: {exc}") from exc
        except BotoCoreError as exc:
            raise S3StorageError(f"s3 head failed: {exc}") from exc
        return True

    def size(self, key: str) -> int | None:
        try:
            head = self._client.head_object(Bucket=self.config.bucket, Key=self.object_key(key))
        except ClientError:
            return None
        except BotoCoreError as exc:
            raise S3StorageError(f"s3 head failed: {exc}") from exc
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        """Delete one object; deleting a missing object is not an error."""
        self._retry("delete", self._client.delete_object, Bucket=self.config.bucket, Key=self.object_key(key))

    def delete_prefix(self, key_prefix: str) -> int:
        """Delete every object under ``key_prefix`` (e.g. a job's folder); returns the count."""
        prefix = self.object_key(key_prefix).rstrip("/") + "/"
        deleted = 0
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=prefix):
                objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if objs:
                    self._client.delete_objects(Bucket=self.config.bucket, Delete={"Objects": objs})
                    deleted += len(objs)
        except (BotoCoreError, ClientError) as exc:
            raise S3StorageError(f"s3 delete failed: {exc}") from exc
        return deleted

    def presigned_url(
        self,
        key: str,
        *,
        ttl_s: int | None = None,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """A fresh presigned GET URL, valid for ``ttl_s`` (default ``url_ttl_s``)."""
        ttl = self.config.url_ttl_s if ttl_s is None else ttl_s
        if not 1 <= ttl <= MAX_PRESIGN_TTL_S:
            raise ValueError(f"ttl_s must be within 1..{MAX_PRESIGN_TTL_S}")
        params: dict[str, str] = {"Bucket": self.config.bucket, "Key": self.object_key(key)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        if content_type:
            params["ResponseContentType"] = content_type
        try:
            url: str = self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl)
        except (BotoCoreError, ClientError) as exc:
            raise S3StorageError(f"s3 presign failed: {exc}") from exc
        return url

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (development / tests only)."""
        try:
            self._client.head_bucket(Bucket=self.config.bucket)
        except ClientError:
            kwargs: dict[str, Any] = {"Bucket": self.config.bucket}
            region = self.config.region
            if region and region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            self._client.create_bucket(**kwargs)


def s3_storage_from_settings(settings: Any) -> S3Storage | None:
    """The S3 backend for ``WANSERVE_STORAGE_URL=s3://BUCKET/PREFIX``, or None for a local path."""
    parsed = parse_storage_url(settings.storage_url or "")
    if parsed is None:
        return None
    bucket, prefix = parsed
    endpoint = settings.s3_endpoint_url
    path_style = settings.s3_path_style if settings.s3_path_style is not None else endpoint is not None
    return S3Storage(
        S3Config(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=endpoint,
            region=settings.s3_region,
            path_style=bool(path_style),
            url_ttl_s=settings.url_ttl_s,
            multipart_threshold=settings.s3_multipart_threshold,
            upload_attempts=settings.s3_upload_attempts,
        )
    )
