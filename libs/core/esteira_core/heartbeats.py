"""Worker heartbeats: who is serving each pool, without trusting arq's once-an-hour health key.

A worker records `now` under its id in the pool's sorted set every interval; it counts as online
while its last beat is younger than three intervals. Dead entries are trimmed on every beat, so the
set stays as small as the pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from contextlib import suppress

from redis.asyncio import Redis
from redis.exceptions import RedisError

from esteira_core import keys

logger = logging.getLogger(__name__)

MISSED_BEATS_BEFORE_OFFLINE = 3


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _stale_before(now: float, interval: float) -> float:
    return now - MISSED_BEATS_BEFORE_OFFLINE * interval


async def beat(redis: Redis, pool: str, member: str, interval: float, busy: int = 0) -> None:
    """Records the worker as alive, with the jobs it is running now."""
    now = time.time()
    key = keys.workers(pool)
    ttl = max(60, int(10 * interval))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {member: now})
        pipe.zremrangebyscore(key, "-inf", _stale_before(now, interval))
        pipe.expire(key, ttl)
        pipe.hset(keys.workers_busy(pool), member, str(busy))
        pipe.expire(keys.workers_busy(pool), ttl)
        await pipe.execute()


async def workers_online(redis: Redis, pool: str, interval: float) -> int:
    count: int = await redis.zcount(
        keys.workers(pool), _stale_before(time.time(), interval), "+inf"
    )
    return count


async def workers_and_busy(redis: Redis, pool: str, interval: float) -> tuple[int, int]:
    """(workers online, jobs they run now), counting only live workers' reports."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrangebyscore(keys.workers(pool), _stale_before(time.time(), interval), "+inf")
        pipe.hgetall(keys.workers_busy(pool))
        live, busy = await pipe.execute()
    return len(live), sum(int(busy.get(member, 0)) for member in live)


async def leave(redis: Redis, pool: str, member: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(keys.workers(pool), member)
        pipe.hdel(keys.workers_busy(pool), member)
        await pipe.execute()


class Heartbeat:
    """Beats in the background until stopped; a Redis outage is logged, never fatal."""

    def __init__(
        self,
        redis: Redis,
        pool: str,
        interval: float,
        member: str | None = None,
        busy: Callable[[], int] = lambda: 0,
    ):
        self.redis = redis
        self.pool = pool
        self.interval = interval
        self.member = member or worker_id()
        self.busy = busy
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        try:
            await beat(self.redis, self.pool, self.member, self.interval, self.busy())
        except (RedisError, OSError) as exc:
            logger.warning("heartbeat failed", extra={"pool": self.pool, "error": str(exc)})

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._beat()

    async def start(self) -> None:
        """Beats once now (the worker is online when this returns), then in the background."""
        await self._beat()
        self._task = asyncio.create_task(self._run(), name=f"heartbeat-{self.pool}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        with suppress(RedisError, OSError):
            await leave(self.redis, self.pool, self.member)
