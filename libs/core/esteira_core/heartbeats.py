"""Worker heartbeats: who is serving each pool, without trusting arq's once-an-hour health key,
and what a dead one leaves behind.

A worker records `now` under its id in the pool's sorted set every interval; it counts as online
while its last beat is younger than three intervals. Dead entries are trimmed on every beat, so the
set stays as small as the pool. A gateway serving a queue itself (a standby worker) beats into a
set of its own: alive, but not one of the pool's workers online.

A running job is held by arq's in-progress key, which arq would keep for the job's whole timeout
+ 10 s: a SIGKILLed worker's jobs would wait that long to run again. Here the key lives only as
long as its worker is alive: it is set for `hold_seconds` (three beats) and each beat extends it
for the jobs the worker still runs, so a dead worker's jobs, still on the queue, are taken by
the next worker that polls within three beats.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import suppress

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from esteira_core import keys

logger = logging.getLogger(__name__)

MISSED_BEATS_BEFORE_OFFLINE = 3


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def stale_before(now: float, interval: float) -> float:
    return now - MISSED_BEATS_BEFORE_OFFLINE * interval


# A Lua function for scripts that must know whether a process is alive: `member` beat within
# the last three intervals in a pool's workers set or its standby (gateway) set.
ALIVE_LUA = """
local function alive(workers, standby, member, stale_before)
  for _, key in ipairs({workers, standby}) do
    local seen = redis.call('ZSCORE', key, member)
    if seen and tonumber(seen) >= stale_before then return true end
  end
  return false
end
"""


def hold_seconds(interval: float) -> float:
    """How long a running job's in-progress key lives without a beat of its worker."""
    return max(2.0, MISSED_BEATS_BEFORE_OFFLINE * interval)


async def beat(
    redis: Redis,
    pool: str,
    member: str,
    interval: float,
    running: Sequence[str] = (),
    *,
    standby: bool = False,
) -> None:
    """Records the worker (or a standby gateway) as alive, with the jobs it runs now, and
    holds their in-progress keys for another `hold_seconds`."""
    now = time.time()
    key = keys.standby_workers(pool) if standby else keys.workers(pool)
    ttl = max(60, int(10 * interval))
    hold_ms = int(hold_seconds(interval) * 1000)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {member: now})
        pipe.zremrangebyscore(key, "-inf", stale_before(now, interval))
        pipe.expire(key, ttl)
        if not standby:
            pipe.hset(keys.workers_busy(pool), member, str(len(running)))
            pipe.expire(keys.workers_busy(pool), ttl)
        for job_id in running:
            pipe.pexpire(in_progress_key_prefix + job_id, hold_ms)
        await pipe.execute()


async def workers_online(redis: Redis, pool: str, interval: float) -> int:
    count: int = await redis.zcount(keys.workers(pool), stale_before(time.time(), interval), "+inf")
    return count


async def leave(redis: Redis, pool: str, member: str, *, standby: bool = False) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(keys.standby_workers(pool) if standby else keys.workers(pool), member)
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
        running: Callable[[], Sequence[str]] = tuple,
        *,
        standby: bool = False,
    ):
        self.redis = redis
        self.pool = pool
        self.interval = interval
        self.member = member or worker_id()
        self.running = running
        self.standby = standby
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        try:
            await beat(
                self.redis,
                self.pool,
                self.member,
                self.interval,
                self.running(),
                standby=self.standby,
            )
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
            await leave(self.redis, self.pool, self.member, standby=self.standby)
