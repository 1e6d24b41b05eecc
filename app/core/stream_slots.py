"""Caps on open event streams: per API key (across every gateway) and per gateway process.

Per key: a Redis sorted set per key holds one member per open stream, scored by when it lapses.
Admission is one script (drop lapsed members, count, add), so gateways behind one load balancer
share the count. Each gateway refreshes its own members every third of ``SLOT_TTL_S`` in one
round trip; a gateway that dies stops refreshing and its slots lapse within ``SLOT_TTL_S``
instead of being held forever. Scores use Redis's clock, so gateway clocks need not agree.

Per process: a plain counter. The global cap protects this process (its sockets, memory and the
shared reader's ``XREAD`` width), so a per-process count is the right measure for it.

With auth off every caller is the same tenant; only the per-process cap applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

import redis.asyncio as aredis

from app.core import keys
from app.core.errors import TooManyStreams

log = logging.getLogger(__name__)

SLOT_TTL_S = 30.0
# No slot frees at a known time; a client retrying after this finds one if a stream has ended.
RETRY_AFTER_S = 5

# KEYS: the key's slot set. ARGV: member, cap, ttl ms. 1 if admitted, else 0.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: one key's slot set. ARGV: ttl ms, members... Extends members still present (XX: a member
# released meanwhile is not brought back).
_REFRESH_LUA = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_ms, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
"""


def slot_set(owner: str) -> str:
    return f"{keys.PREFIX}streams:{owner}"


@dataclass(eq=False)
class Slot:
    owner: str | None
    member: str


class StreamSlots:
    def __init__(self, r: aredis.Redis, *, per_key: int, total: int, ttl_s: float = SLOT_TTL_S) -> None:
        self._r = r
        self._per_key = per_key
        self._total = total
        self._ttl_ms = int(ttl_s * 1000)
        self._open: set[Slot] = set()
        self._acquire = r.register_script(_ACQUIRE_LUA)
        self._refresh = r.register_script(_REFRESH_LUA)
        self._task: asyncio.Task[None] | None = None

    @property
    def open(self) -> int:
        return len(self._open)

    async def acquire(self, owner: str | None) -> Slot:
        """A slot for one stream of ``owner``, or `TooManyStreams` (429)."""
        if self._total and len(self._open) >= self._total:
            raise TooManyStreams(
                f"this gateway has {self._total} open event streams, its limit; retry later",
                retry_after_s=RETRY_AFTER_S,
            )
        slot = Slot(owner, uuid.uuid4().hex)
        if owner is not None and self._per_key:
            admitted = await self._acquire(
                keys=[slot_set(owner)], args=[slot.member, self._per_key, self._ttl_ms]
            )
            if not admitted:
                raise TooManyStreams(
                    f"this API key has {self._per_key} open event streams, its limit; close one or retry",
                    retry_after_s=RETRY_AFTER_S,
                )
        self._open.add(slot)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._refresher(), name="event-stream-slots")
        return slot

    async def release(self, slot: Slot) -> None:
        """Idempotent; a failed ``ZREM`` is harmless (the member lapses within the TTL)."""
        if slot not in self._open:
            return
        self._open.discard(slot)
        if slot.owner is not None and self._per_key:
            try:
                await self._r.zrem(slot_set(slot.owner), slot.member)
            except Exception as exc:
                log.warning("could not release a stream slot of %s: %r", slot.owner, exc)

    async def refresh(self) -> None:
        by_owner: dict[str, list[str]] = {}
        for slot in self._open:
            if slot.owner is not None:
                by_owner.setdefault(slot.owner, []).append(slot.member)
        if not by_owner or not self._per_key:
            return
        pipe = self._r.pipeline(transaction=False)
        for owner, members in by_owner.items():
            await self._refresh(keys=[slot_set(owner)], args=[self._ttl_ms, *members], client=pipe)
        await pipe.execute()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresher(self) -> None:
        while self._open:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                await self.refresh()
            except Exception as exc:  # Redis away: try again; members lapse only after the full TTL
                log.warning("could not refresh stream slots: %r", exc)
