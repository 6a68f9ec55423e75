"""What a queue looks like right now, from Redis alone and without scanning keys: jobs ready and
deferred (two ZCOUNTs on the queue), the oldest ready job's age (its score), and the workers'
own reports of who is online and how many jobs they run.

Jobs waiting in the pool's fair queue (esteira_core.fair), not yet in arq's, count as ready too:
they are the backlog the workers have to serve, so the gauges and the autoscaler see all of it.
The oldest ready age is the older of arq's oldest waiting job (aged from when it was fed) and
the fair queue's (aged from when it was submitted), so a backlog held back by the window or the
portal budget ages as the users who wait for it see it.

arq keeps a running job in its queue's sorted set until the job finishes, marked only by a key
`arq:in-progress:<job_id>` of its own. Reading those keys would mean a lookup per queued job, so
the running jobs are taken from the workers' heartbeats instead and subtracted from the due
jobs (never below 0): `ready` counts jobs waiting for a worker, `in_progress` jobs running, and
a running job is in one of the two, not both. The trade-off: the workers report at each
heartbeat, so for up to one interval a job that has just started still counts as ready (or one
just finished as running), and the jobs of a worker that died without leaving count as ready
until arq retries them; both err towards more replicas, never fewer. arq takes the due jobs in
score order, so the running ones are the oldest: the oldest job waiting is the one after them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from esteira_core import fair, heartbeats, keys
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
    online, busy = await heartbeats.workers_and_busy(redis, pool.value, heartbeat_interval)
    now_ms = time.time() * 1000
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcount(pool.queue, "-inf", now_ms)
        pipe.zcount(pool.queue, f"({now_ms}", "+inf")
        pipe.zrange(pool.queue, busy, busy, withscores=True)
        pipe.hget(keys.fair_queue(pool.value), "jobs")
        due, deferred, oldest, waiting = await pipe.execute()
    ready_in_arq = max(0, due - busy)
    in_fair_queue = max(0, int(waiting or 0))
    ready = ready_in_arq + in_fair_queue
    since = [oldest[0][1]] if ready_in_arq and oldest else []
    if in_fair_queue and (submitted := await fair.oldest_waiting_ms(redis, pool)) is not None:
        since.append(submitted)
    oldest_age = max(0.0, (now_ms - min(since)) / 1000) if since else 0.0
    return QueueStats(pool.value, ready, deferred, busy, round(oldest_age, 3), online)
