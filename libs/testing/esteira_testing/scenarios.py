"""An async scenario run against a Redis with the client every Esteira process uses, for tests
that act as a worker or the gateway would on Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis

from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings

T = TypeVar("T")


def on_redis(redis_url: str, scenario: Callable[[Redis], Awaitable[T]]) -> T:
    """What `scenario` answers, run with a client of `redis_url` closed after it."""

    async def run() -> T:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        try:
            return await scenario(redis)
        finally:
            await redis.aclose()

    return asyncio.run(run())
