"""Object storage: the `Storage` protocol, the local-folder backend, and HMAC-signed URLs.

Keys are built by the service from job ids (`job_key`), never by clients, so a redelivered job
writes the same objects again. The local backend's files are served by the gateway at
``/v1/files/<key>?expires=<unix>&sig=<hmac>``; a tampered or expired URL gets 403. The S3 backend
(`app.core.storage_s3`) implements the same protocol with presigned URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote, urlencode

from app.core.config import Settings
from app.core.errors import Forbidden, NotFound

CONTENT_TYPES = {  # by file suffix, for every backend (uploads and served files)
    ".mp4": "video/mp4",
    ".webp": "image/webp",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".json": "application/json",
}
ASSET_NAMES = {
    "video": "video.mp4",
    "thumbnail": "thumbnail.webp",
    "spritesheet": "spritesheet.webp",  # a grid of frames (worker/spritesheet.py)
    "input": "input.png",
}


def job_key(job_id: str, asset: str) -> str:
    """The storage key of one asset of a job: ``videos/<job id>/<name>``."""
    return f"videos/{job_id}/{ASSET_NAMES[asset]}"


def job_prefix(job_id: str) -> str:
    return f"videos/{job_id}"


def content_type_for(key: str) -> str:
    return CONTENT_TYPES.get(Path(key).suffix.lower(), "application/octet-stream")


@runtime_checkable
class Storage(Protocol):
    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> str: ...
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, key_prefix: str) -> int: ...
    def presigned_url(
        self,
        key: str,
        *,
        ttl_s: int | None = None,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str: ...
    def local_path(self, key: str) -> Path | None:
        """The file behind ``key`` when the gateway can stream it itself, else None (redirect)."""
        ...


class UrlSigner:
    """HMAC-SHA256 over ``key`` and expiry time; constant-time verification."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def sign(self, key: str, expires: int) -> str:
        return hmac.new(self._secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def verify(self, key: str, expires: str, sig: str, *, now: float | None = None) -> None:
        try:
            exp = int(expires)
        except ValueError:
            raise Forbidden("malformed signed URL") from None
        # compare bytes: compare_digest raises TypeError on a non-ASCII str (a 500, not a 403)
        if not hmac.compare_digest(self.sign(key, exp).encode(), sig.encode("utf-8", "replace")):
            raise Forbidden("invalid signature")
        if (now or time.time()) > exp:
            raise Forbidden("signed URL expired")


class LocalStorage:
    """Files under a root folder; writes are atomic (temp file + rename)."""

    def __init__(
        self, root: Path, signer: UrlSigner, *, url_ttl_s: int, public_url: str | None = None
    ) -> None:
        self.root = root.resolve()
        self.signer = signer
        self.url_ttl_s = url_ttl_s
        self.public_url = (public_url or "").rstrip("/")

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents:
            raise NotFound(f"bad storage key {key!r}")
        return p

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> str:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        os.close(fd)
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
        return key

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
        return key

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no object {key!r}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int | None:
        p = self._path(key)
        return p.stat().st_size if p.is_file() else None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, key_prefix: str) -> int:
        folder = self._path(key_prefix)
        if not folder.is_dir():
            return 0
        n = sum(1 for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return n

    def presigned_url(
        self,
        key: str,
        *,
        ttl_s: int | None = None,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """``/v1/files/<key>?expires&sig``, absolute when ``public_url`` is set (else the gateway
        joins it with the request's base URL)."""
        expires = int(time.time()) + (ttl_s or self.url_ttl_s)
        query = urlencode({"expires": expires, "sig": self.signer.sign(key, expires)})
        return f"{self.public_url}/v1/files/{quote(key)}?{query}"

    def local_path(self, key: str) -> Path | None:
        p = self._path(key)
        return p if p.is_file() else None


def make_storage(settings: Settings) -> Storage:
    """The backend selected by ``WANSERVE_STORAGE_URL`` (default: local ``<data_dir>/objects``)."""
    from app.core.storage_s3 import s3_storage_from_settings

    s3 = s3_storage_from_settings(settings)
    if s3 is not None:
        return s3
    signer = UrlSigner(settings.signing_key.get_secret_value())
    return LocalStorage(
        settings.storage_root, signer, url_ttl_s=settings.url_ttl_s, public_url=settings.public_url
    )
