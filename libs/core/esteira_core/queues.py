"""What a queue looks like right now, from Redis alone and without scanning keys: jobs ready and
deferred (two ZCOUNTs on the queue), the oldest ready job's age (its score), and the workers'
own reports of who is online and how many jobs they run."""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from esteira_core import heartbeats
from esteira_core.jobs import Pool


@dataclass(frozen=True)
class QueueStats:
    pool: str
    ready: int
    deferred: int
    in_progress: int
    oldest_ready_age_seconds: float
    workers_online: int


async def queue_stats(redis: Redis, pool: Pool, heartbeat_interval: float) -> QueueStats:
    now_ms = time.time() * 1000
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcount(pool.queue, "-inf", now_ms)
        pipe.zcount(pool.queue, f"({now_ms}", "+inf")
        pipe.zrange(pool.queue, 0, 0, withscores=True)
        ready, deferred, oldest = await pipe.execute()
    online, busy = await heartbeats.workers_and_busy(redis, pool.value, heartbeat_interval)
    oldest_age = 0.0
    if oldest and oldest[0][1] <= now_ms:
        oldest_age = (now_ms - oldest[0][1]) / 1000
    return QueueStats(pool.value, ready, deferred, busy, round(oldest_age, 3), online)
