"""Job leases: who is running which job, until when. The reaper's evidence that a worker died.

A worker takes a lease on a job before it starts it (``acquire``) and renews it from a background
thread every heartbeat (``refresh``, owner-checked); it drops it when the job ends (``release``).
A worker that dies (SIGKILL, power loss) stops renewing, so its lease's expiry passes and the
reaper (`app.core.reaper`) claims it (``CLAIM_LUA`` with ``expired=1``) and requeues the job or
fails it as ``worker_lost``. The Celery parent of a killed prefork child, and a worker whose
SIGTERM grace period ran out, claim their own lease at once (``expired=0`` + owner).

Every claim is one Lua script that removes the lease and reads the job's status atomically, so a
lease is claimed at most once: a job is never requeued twice for one loss, and a job the worker
finished before the claim (status no longer pending) is left alone. A worker that was only slow
finds its lease gone at its next renewal and abandons the job at the next step (the fence).

Keys: ``wanserve:leases`` (zset job id → expiry, unix s) and ``wanserve:lease_owners`` (hash job
id → worker id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio as aredis

from app.core import keys

# KEYS: leases, owners. ARGV: job id, worker id, expiry.
ACQUIRE_LUA = """
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# KEYS: leases, owners. ARGV: job id, worker id, expiry. 1 renewed, 0 the lease is no longer ours.
REFRESH_LUA = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""

# KEYS: leases, owners. ARGV: job id, worker id.
RELEASE_LUA = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

# KEYS: leases, owners, job hash. ARGV: job id, now, expired-only ("1"/"0"), owner ("" = any),
# graceful ("1": the delivery is not counted as a lost attempt).
# Returns {0} when there is nothing to claim, else {1, status or false, owner, attempts}.
CLAIM_LUA = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return {0} end
if ARGV[3] == '1' and tonumber(score) > tonumber(ARGV[2]) then return {0} end
local owner = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if ARGV[4] ~= '' and owner ~= ARGV[4] then return {0} end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local status = redis.call('HGET', KEYS[3], 'status')
local attempts = tonumber(redis.call('HGET', KEYS[3], 'attempts') or '0') or 0
if status == 'in_progress' or status == 'queued' then
  if ARGV[5] == '1' and attempts > 0 then
    attempts = attempts - 1
    redis.call('HSET', KEYS[3], 'attempts', tostring(attempts))
  end
  redis.call('HSET', KEYS[3], 'worker_id', 'null')
end
return {1, status, owner, attempts}
"""


@dataclass(frozen=True)
class Claim:
    """A claimed lease: the job's status at the claim (None: the record is gone)."""

    job_id: str
    status: str | None
    owner: str
    attempts: int

    @property
    def pending(self) -> bool:
        return self.status in ("queued", "in_progress")


def _claim(job_id: str, res: Any) -> Claim | None:
    if not res or not int(res[0]):
        return None
    status = res[1] if isinstance(res[1], str) and res[1] else None
    return Claim(job_id, status, str(res[2] or ""), int(res[3]))


def _claim_args(job_id: str, now: float, *, expired: bool, owner: str, graceful: bool) -> list[str]:
    return [job_id, repr(now), "1" if expired else "0", owner, "1" if graceful else "0"]


class Leases:
    """Synchronous lease operations (worker processes)."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._acquire = r.register_script(ACQUIRE_LUA)
        self._refresh = r.register_script(REFRESH_LUA)
        self._release = r.register_script(RELEASE_LUA)
        self._claim = r.register_script(CLAIM_LUA)

    def acquire(self, job_id: str, worker_id: str, expires_at: float) -> None:
        self._acquire(keys=[keys.LEASES, keys.LEASE_OWNERS], args=[job_id, worker_id, repr(expires_at)])

    def refresh(self, job_id: str, worker_id: str, expires_at: float) -> bool:
        return bool(
            self._refresh(keys=[keys.LEASES, keys.LEASE_OWNERS], args=[job_id, worker_id, repr(expires_at)])
        )

    def release(self, job_id: str, worker_id: str) -> bool:
        return bool(self._release(keys=[keys.LEASES, keys.LEASE_OWNERS], args=[job_id, worker_id]))

    def owner(self, job_id: str) -> str | None:
        v = self.r.hget(keys.LEASE_OWNERS, job_id)
        return None if v is None else str(v)

    def owned_by(self, worker_id: str) -> list[str]:
        raw: dict[str, str] = self.r.hgetall(keys.LEASE_OWNERS)  # type: ignore[assignment]
        return [job for job, owner in raw.items() if owner == worker_id]

    def claim(
        self, job_id: str, now: float, *, expired: bool, owner: str = "", graceful: bool = False
    ) -> Claim | None:
        args = _claim_args(job_id, now, expired=expired, owner=owner, graceful=graceful)
        return _claim(job_id, self._claim(keys=[keys.LEASES, keys.LEASE_OWNERS, keys.job(job_id)], args=args))


class AsyncLeases:
    """The reaper's side (gateway, redis.asyncio)."""

    def __init__(self, r: aredis.Redis) -> None:
        self.r = r
        self._acquire = r.register_script(ACQUIRE_LUA)
        self._claim = r.register_script(CLAIM_LUA)

    async def expired(self, now: float, limit: int = 100) -> list[str]:
        ids = cast(list[Any], await self.r.zrangebyscore(keys.LEASES, "-inf", now, start=0, num=limit))
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def acquire(self, job_id: str, worker_id: str, expires_at: float) -> None:
        await self._acquire(keys=[keys.LEASES, keys.LEASE_OWNERS], args=[job_id, worker_id, repr(expires_at)])

    async def claim_expired(self, job_id: str, now: float) -> Claim | None:
        args = _claim_args(job_id, now, expired=True, owner="", graceful=False)
        return _claim(
            job_id, await self._claim(keys=[keys.LEASES, keys.LEASE_OWNERS, keys.job(job_id)], args=args)
        )
