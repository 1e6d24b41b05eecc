"""Redis clients with bounded timeouts, so an unreachable Redis fails fast instead of hanging."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aredis
from redis.backoff import ConstantBackoff
from redis.retry import Retry

from app.core.config import Settings


def _kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "socket_connect_timeout": settings.redis_timeout_s,
        "socket_timeout": settings.redis_timeout_s + 5.0,  # above the 1 s XREAD BLOCK used by SSE
        "decode_responses": True,
        "health_check_interval": 30,
    }


def sync_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url,
        retry=Retry(ConstantBackoff(0.05), 1),
        **_kwargs(settings),
    )


def async_client(settings: Settings) -> aredis.Redis:
    """A bounded pool that makes a burst wait (up to ``redis_timeout_s``) for a free connection
    instead of failing at once: 150 requests arriving together are not 50 503s."""
    pool = aredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_s,
        retry=aredis.retry.Retry(ConstantBackoff(0.05), 1),
        **_kwargs(settings),
    )
    return aredis.Redis.from_pool(pool)


def async_broker_client(settings: Settings) -> aredis.Redis:
    """The broker's Redis (for reading its queues), with the same bounded timeouts."""
    return aredis.Redis.from_url(settings.broker, **_kwargs(settings))
