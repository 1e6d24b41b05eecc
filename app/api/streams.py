"""The gateway's event-stream resources: the shared reader, the stream caps, a revocation cache."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis.asyncio as aredis

from app.core.apikeys import ApiKeyStore
from app.core.config import Settings
from app.core.redisconn import async_client
from app.core.stream_hub import StreamHub
from app.core.stream_slots import StreamSlots

KEY_RECHECK_S = 2.0


@dataclass
class KeyCheck:
    """Whether a bearer token is still valid, asked of Redis at most every ``KEY_RECHECK_S`` per
    token and process (not once per open stream: 300 streams of one key cost one lookup)."""

    r: aredis.Redis
    _seen: dict[str, tuple[float, bool]] = field(default_factory=dict)

    async def revoked(self, token: str) -> bool:
        now = time.monotonic()
        checked_at, valid = self._seen.get(token, (0.0, True))
        if now - checked_at >= KEY_RECHECK_S:
            # marked before the lookup, so the other streams of this key keep the last answer
            # meanwhile instead of all asking at once
            self._seen[token] = (now, valid)
            valid = await ApiKeyStore(self.r).authenticate(token) is not None
            self._seen[token] = (now, valid)
            if len(self._seen) > 10_000:  # tokens of long-closed streams
                self._seen = {t: v for t, v in self._seen.items() if now - v[0] < KEY_RECHECK_S}
        return not valid


@dataclass
class EventStreams:
    hub: StreamHub
    slots: StreamSlots
    keys: KeyCheck

    @classmethod
    def open(cls, r: aredis.Redis, settings: Settings) -> EventStreams:
        return cls(
            hub=StreamHub(async_client(settings)),  # its own connection, never one of the pool's
            slots=StreamSlots(r, per_key=settings.max_streams_per_key, total=settings.max_streams_total),
            keys=KeyCheck(r),
        )

    async def close(self) -> None:
        await self.slots.close()
        await self.hub.close()
