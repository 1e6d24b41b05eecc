"""Per-key abuse limits kept in Redis.

Two per-key policies and one global one, all enforced atomically with Lua:

- ``requests``: at most ``requests_per_window`` API requests per ``window_s`` (fixed window);
- ``active``: at most ``max_active_jobs`` queued + running jobs per key (a Redis set of job ids per
  owner, entered on submission and left on a terminal transition or delete);
- ``queue``: at most ``max_queued_global`` active jobs across all keys.

Over a limit the gateway answers 429 with ``Retry-After`` and the IETF draft headers
(``RateLimit-Policy: "requests";q=60;w=60`` and ``RateLimit: "requests";r=0;t=12``) plus the
legacy ``X-RateLimit-Limit/Remaining/Reset``. A limit of 0 disables that policy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from app.core import keys
from app.core.config import Settings
from app.core.errors import ServiceError
from app.core.redis_mux import RedisMux, ScriptRunner

_RATE_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
return {n, ttl}
"""

# A Lua function shared by the reservation script below and the job store's create script (which
# reserves and creates in one round trip). Members whose job record is gone or no longer
# queued/in_progress are pruned lazily at the limit, so a deleted, expired or finished job never
# holds a slot. Returns 0 (reserved), 1 (per-key limit reached) or 2 (global limit reached).
RESERVE_FN = """
local function reserve(owner_set, all_set, job_id, per_key, global, prefix)
  local function prune(set)
    for _, id in ipairs(redis.call('SMEMBERS', set)) do
      local st = redis.call('HGET', prefix .. id, 'status')
      if st ~= 'queued' and st ~= 'in_progress' then
        redis.call('SREM', owner_set, id)
        redis.call('SREM', all_set, id)
      end
    end
  end
  if redis.call('SISMEMBER', all_set, job_id) == 1 then return 0 end
  per_key = tonumber(per_key)
  global = tonumber(global)
  if per_key > 0 and redis.call('SCARD', owner_set) >= per_key then
    prune(owner_set)
    if redis.call('SCARD', owner_set) >= per_key then return 1 end
  end
  if global > 0 and redis.call('SCARD', all_set) >= global then
    prune(all_set)
    if redis.call('SCARD', all_set) >= global then return 2 end
  end
  redis.call('SADD', owner_set, job_id)
  redis.call('SADD', all_set, job_id)
  return 0
end
"""

# KEYS: owner set, global set. ARGV: job id, per-key limit, global limit, job hash prefix.
_RESERVE_LUA = RESERVE_FN + "return reserve(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])\n"


@dataclass(frozen=True)
class SlotClaim:
    """What reserving an active-job slot needs, for a script that reserves as it creates the job:
    KEYS owner set and global set; ARGV per-key limit, global limit, job hash prefix."""

    keys: tuple[str, str]
    args: tuple[str, str, str]


@dataclass(frozen=True)
class RateLimits:
    requests_per_window: int = 120
    window_s: int = 60
    max_active_jobs: int = 8
    max_queued_global: int = 1000
    busy_retry_after_s: int = 10


@dataclass
class LimitDecision:
    allowed: bool
    policy: str
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int = 0
    headers: dict[str, str] = field(default_factory=dict)


class RateLimitExceeded(ServiceError):
    """→ 429 with ``headers`` (Retry-After, RateLimit-Policy, RateLimit, X-RateLimit-*)."""

    status, title, type_slug = 429, "Too many requests", "rate-limited"

    def __init__(self, decision: LimitDecision, detail: str) -> None:
        super().__init__(detail)
        self.decision = decision
        self.headers = dict(decision.headers)


def _headers(policy: str, limit: int, remaining: int, reset_s: int, window_s: int | None) -> dict[str, str]:
    pol = f'"{policy}";q={limit}' + (f";w={window_s}" if window_s else "")
    return {
        "RateLimit-Policy": pol,
        "RateLimit": f'"{policy}";r={max(remaining, 0)};t={max(reset_s, 0)}',
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(remaining, 0)),
        "X-RateLimit-Reset": str(max(reset_s, 0)),
    }


def rate_limits(settings: Settings) -> RateLimits:
    return RateLimits(
        requests_per_window=settings.rate_limit_requests,
        window_s=settings.rate_limit_window_s,
        max_active_jobs=settings.max_active_jobs,
        max_queued_global=settings.max_queued_jobs,
    )


class RateLimiter:
    def __init__(self, redis: Redis, limits: RateLimits) -> None:
        self.redis = redis
        self.limits = limits
        # EVALSHA: the script text is sent once per connection's server, not with every request
        self._rate: ScriptRunner = redis.register_script(_RATE_LUA)
        self._reserve: ScriptRunner = redis.register_script(_RESERVE_LUA)

    def run_hit_script_on(self, mux: RedisMux) -> None:
        """The per-request count (`hit`) through the gateway's pipelined connection."""
        self._rate = mux.script(_RATE_LUA)

    async def hit(self, owner: str) -> LimitDecision:
        """Count one request for ``owner``; raises ``RateLimitExceeded`` over the limit."""
        lim = self.limits
        if lim.requests_per_window <= 0:
            return LimitDecision(True, "requests", 0, 0, 0)
        window = int(time.time()) // lim.window_s
        key = keys.rate_window(owner, window)
        n, ttl = await self._rate(keys=[key], args=[str(lim.window_s + 1)])
        n, ttl = int(n), max(int(ttl), 1)
        reset = min(ttl, lim.window_s)
        remaining = lim.requests_per_window - n
        decision = LimitDecision(
            allowed=n <= lim.requests_per_window,
            policy="requests",
            limit=lim.requests_per_window,
            remaining=max(remaining, 0),
            reset_s=reset,
            retry_after_s=reset if n > lim.requests_per_window else 0,
            headers=_headers("requests", lim.requests_per_window, remaining, reset, lim.window_s),
        )
        if not decision.allowed:
            decision.headers["Retry-After"] = str(decision.retry_after_s)
            raise RateLimitExceeded(
                decision, f"request rate limit of {lim.requests_per_window} per {lim.window_s}s exceeded"
            )
        return decision

    def slot_claim(self, owner: str, *, per_key: bool = True) -> SlotClaim:
        """The slot reservation `reserve_job` makes, for a script to make with its own writes."""
        lim = self.limits
        return SlotClaim(
            (keys.active_jobs(owner), keys.ACTIVE_ALL),
            (str(lim.max_active_jobs if per_key else 0), str(lim.max_queued_global), keys.JOB_PREFIX),
        )

    async def reserve_job(self, owner: str, job_id: str, *, per_key: bool = True) -> None:
        """Enter ``job_id`` into the owner's and the global active sets, or raise 429.

        Call before the job record is written; a job whose record never appears (or that ends)
        frees its slot the next time a limit is reached.
        """
        res = self.slot_claim(owner, per_key=per_key)
        self.check_reserved(int(await self._reserve(keys=list(res.keys), args=[job_id, *res.args])))

    def check_reserved(self, res: int) -> None:
        """Raise the 429 for a reservation's answer (0: reserved)."""
        lim = self.limits
        if res == 0:
            return
        retry = lim.busy_retry_after_s
        if res == 1:
            headers = _headers("active", lim.max_active_jobs, 0, retry, None)
            headers["Retry-After"] = str(retry)
            raise RateLimitExceeded(
                LimitDecision(False, "active", lim.max_active_jobs, 0, retry, retry, headers),
                f"this API key already has {lim.max_active_jobs} active (queued or running) jobs",
            )
        headers = _headers("queue", lim.max_queued_global, 0, retry, None)
        headers["Retry-After"] = str(retry)
        raise RateLimitExceeded(
            LimitDecision(False, "queue", lim.max_queued_global, 0, retry, retry, headers),
            "the service queue is full; retry later",
        )

    async def release_job(self, owner: str, job_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.srem(keys.active_jobs(owner), job_id)
        pipe.srem(keys.ACTIVE_ALL, job_id)
        await pipe.execute()

    async def active_count(self, owner: str) -> int:
        return int(await self.redis.scard(keys.active_jobs(owner)))
