"""``Idempotency-Key`` for ``POST /v1/videos`` (IETF draft-ietf-httpapi-idempotency-key-header).

- Keys are scoped per API key (owner): the Redis key is ``wanserve:idem:<owner>:<sha256(key)>``.
- The stored record pairs the key with a fingerprint (SHA-256 of the canonical request fields and
  any uploaded file) and the job id it produced.
- Same key + same fingerprint → the same job (the gateway answers with it, no new job);
  same key + different fingerprint → 400; a retry while the first request is still being
  processed → 409.
- Records expire ``ttl_s`` after creation (default 24 h, ``WANSERVE_IDEMPOTENCY_TTL_S``).
- Keys must be 1-255 printable ASCII characters; an RFC 8941 quoted form (``"abc"``) is accepted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from app.core import keys
from app.core.errors import Conflict, FieldError, InvalidInput

DEFAULT_TTL_S = 24 * 3600
_PENDING_TTL_S = 60


HEADER = "Idempotency-Key"


class IdempotencyKeyInvalid(InvalidInput):
    def __init__(self, reason: str) -> None:
        super().__init__(f"{HEADER}: {reason}", errors=[FieldError(HEADER, reason)])


class IdempotencyMismatch(InvalidInput):
    def __init__(self, reason: str) -> None:
        super().__init__(f"{HEADER}: {reason}", errors=[FieldError(HEADER, reason)])


class IdempotencyInProgress(Conflict):
    retryable = True  # the first request finishes within seconds; a retry then replays it


@dataclass(frozen=True)
class Reservation:
    redis_key: str
    fingerprint: str
    existing_job_id: str | None  # set when this is a replay of a finished request


def normalize_key(raw: str) -> str:
    key = raw.strip()
    if len(key) >= 2 and key[0] == '"' and key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= 255 or any(not (0x20 < ord(c) < 0x7F) for c in key):
        raise IdempotencyKeyInvalid("must be 1-255 printable ASCII characters without spaces")
    return key


def fingerprint(fields: Mapping[str, Any], file_bytes: bytes | None = None) -> str:
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode())
    if file_bytes is not None:
        h.update(b"\x00file:")
        h.update(hashlib.sha256(file_bytes).digest())
    return h.hexdigest()


class IdempotencyStore:
    def __init__(self, redis: Redis, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    def _rkey(self, owner: str, key: str) -> str:
        return keys.idempotency(owner, hashlib.sha256(key.encode()).hexdigest())

    async def begin(self, owner: str, raw_key: str, fp: str) -> Reservation:
        """Claim the key, or report the earlier job for an identical replay."""
        rkey = self._rkey(owner, normalize_key(raw_key))
        claimed = await self.redis.set(
            rkey, json.dumps({"fp": fp, "job_id": None}), nx=True, ex=_PENDING_TTL_S
        )
        if claimed:
            return Reservation(rkey, fp, None)
        raw = await self.redis.get(rkey)
        if raw is None:  # expired between the two calls; try once more
            return await self.begin(owner, raw_key, fp)
        rec = json.loads(raw)
        if rec.get("fp") != fp:
            raise IdempotencyMismatch("this key was already used with a different request body")
        job_id = rec.get("job_id")
        if not job_id:
            raise IdempotencyInProgress("a request with this Idempotency-Key is still being processed")
        return Reservation(rkey, fp, str(job_id))

    async def complete(self, res: Reservation, job_id: str) -> None:
        await self.redis.set(
            res.redis_key, json.dumps({"fp": res.fingerprint, "job_id": job_id}), ex=self.ttl_s
        )

    async def abandon(self, res: Reservation) -> None:
        """Release a claim whose request failed before creating a job, so a retry can proceed."""
        if res.existing_job_id is None:
            await self.redis.delete(res.redis_key)
