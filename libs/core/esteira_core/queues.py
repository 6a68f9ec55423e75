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

All of it is read by one script, in one round trip: the gateway reads it for `/api/v1/queues`
and for its queue-mode decisions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from esteira_core import fair, heartbeats, keys
from esteira_core.jobs import Pool
from esteira_core.redis import run_script

# KEYS: the pool's heartbeats, its workers' busy reports, arq's queue, the fair queue's hash
# and its tenants. ARGV: the score a live worker's heartbeat beats, now in ms, and the prefix of
# the tenants' lists. Returns the live workers, the jobs they run, the jobs due and deferred on
# arq's queue, the score of the oldest job not running (or nil), the jobs waiting in the fair
# queue (or nil) and when the oldest of them was submitted (or nil).
_STATS = (
    fair.OLDEST_WAITING_LUA
    + """
local live = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')
local busy = 0
if #live > 0 then
  for _, jobs in ipairs(redis.call('HMGET', KEYS[2], unpack(live))) do
    busy = busy + (tonumber(jobs) or 0)
  end
end
local due = redis.call('ZCOUNT', KEYS[3], '-inf', ARGV[2])
local deferred = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[2], '+inf')
local oldest = redis.call('ZRANGE', KEYS[3], busy, busy, 'WITHSCORES')
local waiting = redis.call('HGET', KEYS[4], 'jobs') or false
local submitted = false
if waiting and tonumber(waiting) > 0 then
  submitted = oldest_waiting(KEYS[5], ARGV[3])
end
return {#live, busy, due, deferred, oldest[2] or false, waiting, submitted}
"""
)


@dataclass(frozen=True)
class QueueStats:
    pool: str
    ready: int
    deferred: int
    in_progress: int
    oldest_ready_age_seconds: float
    workers_online: int


async def queue_stats(redis: Redis, pool: Pool, heartbeat_interval: float) -> QueueStats:
    now = time.time()
    now_ms = now * 1000
    online, busy, due, deferred, oldest, waiting, submitted = await run_script(
        redis,
        _STATS,
        [
            keys.workers(pool.value),
            keys.workers_busy(pool.value),
            pool.queue,
            keys.fair_queue(pool.value),
            keys.fair_tenants(pool.value),
        ],
        [
            repr(heartbeats.stale_before(now, heartbeat_interval)),
            repr(now_ms),
            keys.fair_waiting(pool.value, ""),
        ],
    )
    ready_in_arq = max(0, due - busy)
    ready = ready_in_arq + max(0, int(waiting or 0))
    since = [float(oldest)] if ready_in_arq and oldest is not None else []
    if submitted is not None:
        since.append(float(submitted))
    oldest_age = max(0.0, (now_ms - min(since)) / 1000) if since else 0.0
    return QueueStats(pool.value, ready, deferred, busy, round(oldest_age, 3), online)
