"""Bearer API keys, stored only as SHA-256 hashes in Redis.

A key looks like ``wsk_<43 url-safe chars>`` (256 random bits), is shown once at creation and never
stored. Redis holds, per key, a hash record under ``wanserve:apikey:<sha256 hex>`` with the key's
``id`` (``key_<hex>``, the owner id stamped on every job it creates), ``name``, ``created_at``, ``admin``
and ``max_priority`` (the highest job priority it may ask for; empty: the deployment's default),
plus a ``wanserve:apikey_name:<name>`` → hash index. Revoking deletes both. Names are unique.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from app.core import keys
from app.core.redis_mux import RedisMux

KEY_PREFIX = "wsk_"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Owner id used for every job when auth is disabled (embedded local mode).
ANONYMOUS_OWNER = "key_anonymous"


class ApiKeyError(ValueError):
    pass


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    created_at: int
    admin: bool = False  # may use /v1/admin/* (operators); tenants' keys never can
    max_priority: str | None = None  # None: WANSERVE_MAX_PRIORITY; admin keys may use any

    def priority_limit(self, default: str) -> str:
        return "high" if self.admin else self.max_priority or default


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ApiKeyError("key name must be 1-64 chars of letters, digits, '.', '_' or '-'")
    return name


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        return None
    return token


class ApiKeyStore:
    def __init__(self, redis: Redis, mux: RedisMux | None = None) -> None:
        """``mux``: the gateway's pipelined connection, for the key lookup every request makes."""
        self.redis = redis
        self.mux = mux

    async def create(
        self, name: str, *, admin: bool = False, max_priority: str | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key; returns the record and the plaintext token (shown once)."""
        validate_name(name)
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = hash_key(token)
        if max_priority not in (None, "high", "normal", "low"):
            raise ApiKeyError("max_priority must be high, normal or low")
        key_id, now = "key_" + secrets.token_hex(8), int(time.time())
        key = ApiKey(id=key_id, name=name, created_at=now, admin=admin, max_priority=max_priority)
        claimed = await self.redis.set(keys.apikey_name(name), digest, nx=True)
        if not claimed:
            raise ApiKeyError(f"a key named {name!r} already exists")
        pipe = self.redis.pipeline(transaction=True)
        at, flag = str(key.created_at), "1" if admin else "0"
        rec = {
            "id": key.id,
            "name": key.name,
            "created_at": at,
            "admin": flag,
            "max_priority": max_priority or "",
        }
        pipe.hset(keys.apikey(digest), mapping=rec)  # type: ignore[arg-type]
        pipe.sadd(keys.APIKEY_NAMES, name)
        await pipe.execute()
        return key, token

    async def revoke(self, name: str) -> bool:
        digest = await self.redis.get(keys.apikey_name(name))
        if digest is None:
            return False
        digest_s = digest.decode() if isinstance(digest, bytes) else str(digest)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.apikey(digest_s))
        pipe.delete(keys.apikey_name(name))
        pipe.srem(keys.APIKEY_NAMES, name)
        await pipe.execute()
        return True

    async def list(self) -> list[ApiKey]:
        out: list[ApiKey] = []
        names = sorted(
            n.decode() if isinstance(n, bytes) else str(n)
            for n in await self.redis.smembers(keys.APIKEY_NAMES)
        )
        for name in names:
            digest = await self.redis.get(keys.apikey_name(name))
            if digest is None:
                continue
            rec = await self._record(digest.decode() if isinstance(digest, bytes) else str(digest))
            if rec is not None:
                out.append(rec)
        return out

    async def _record(self, digest: str) -> ApiKey | None:
        if self.mux is not None:
            flat = await self.mux.call("HGETALL", keys.apikey(digest))
            raw = dict(zip(flat[::2], flat[1::2], strict=True))
        else:
            raw = await self.redis.hgetall(keys.apikey(digest))
        if not raw:
            return None
        rec = {
            (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in raw.items()
        }
        created = int(rec.get("created_at", "0"))
        return ApiKey(
            id=rec["id"],
            name=rec["name"],
            created_at=created,
            admin=rec.get("admin") == "1",
            max_priority=rec.get("max_priority") or None,
        )

    async def authenticate(self, token: str | None) -> ApiKey | None:
        """The key record for a presented token, or None if unknown/revoked/malformed."""
        if not token or not token.startswith(KEY_PREFIX) or len(token) > 256:
            return None
        return await self._record(hash_key(token))
