"""Fair sharing of a pool between tenants: a queue in Redis in front of arq's.

arq serves its queue first come, first served, so one tenant's backlog of thousands of jobs
would delay every other tenant's single job by the whole backlog. Here a tenant's jobs wait in
a list of its own, and only a small window of jobs is in arq's hands at once:

- **Round robin**: the tenants with jobs waiting take turns, one job each. A sorted set scores
  each by the virtual time of its next turn; the tenant served moves to the back (its score
  + 1), and a tenant with nothing waiting that submits enters at the clock (the score of the
  last tenant served): it is served within one round, and earns no credit for its idle time.
  Within a tenant, jobs keep the order they were submitted in.
- **Window**: jobs are moved ("fed") onto arq's queue only while arq's due jobs (ready and
  running: arq keeps a running job in its sorted set) are fewer than `window` per worker online
  (the pool's workers and the gateways serving it as standby, counted from their heartbeats;
  1 when none, so a pool at zero replicas still has work ageing on its queue, which the
  dispatcher's grace rule reads). A job deferred by arq (a retry's backoff) holds no place.
  The window per worker is small, so a newcomer's job waits behind at most that many jobs per
  worker, and grows with the replicas, so scaling out still adds throughput.
- **Budget**: a pool with one (the scraper's portal token bucket, per portal host, shared with
  esteira_core.ratelimit) spends a token on each job it feeds and feeds nothing while there is
  none, so the round robin decides which tenant each token goes to.
- **Quotas**: a tenant may have at most `Quota.limit` units (orders, lookups) waiting; a
  submission beyond it is refused whole, atomically, with QuotaExceeded.

A job whose id already has an arq job or result is not fed again (what arq's enqueue_job
guarantees). Feeding happens on each submit, as jobs end (esteira_core.worker: after every
window/4-th job a process ends), and in a Feeder loop in each worker and gateway: every
heartbeat interval, and while jobs wait as soon as a token is due or every FEED_RETRY_SECONDS.
Any of them may feed; each feed is one Lua call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis

from esteira_core import heartbeats, keys, metrics, ratelimit
from esteira_core.errors import QuotaExceeded, TooLarge
from esteira_core.jobs import JobPayload, Pool
from esteira_core.redis import REDIS_ERRORS
from esteira_core.serialization import serialize_job as serialize_job_record

logger = logging.getLogger(__name__)

# While jobs wait, the Feeder tries again this soon (a job ending feeds at once anyway).
FEED_RETRY_SECONDS = 0.2
# Most jobs one feed moves: bounds the time one Lua call holds Redis.
FEED_MOST = 1000


@dataclass(frozen=True)
class FairQueue:
    """How a pool's fair queue feeds arq: `window` jobs in arq's hands per worker online
    (workers known from heartbeats every `heartbeat_interval`), and the token `budget` a job
    spends when fed, if any."""

    pool: Pool
    window: int
    heartbeat_interval: float
    budget: ratelimit.Bucket | None = None


@dataclass(frozen=True)
class Quota:
    """At most `limit` `unit`s (orders, lookups) of one tenant waiting; beyond it the client is
    told to come back after `retry_after` seconds."""

    limit: int
    unit: str
    retry_after: int


@dataclass(frozen=True)
class Job:
    """One job to submit: its arq id, its payload, and the units of work it counts for."""

    job_id: str
    payload: JobPayload
    units: int = 1


@dataclass(frozen=True)
class Fed:
    job_ids: list[str]  # moved onto arq's queue by this feed, in the order they were served
    waiting: int  # jobs still waiting in the fair queue
    token_wait: float  # seconds until the budget has a token (0: feeding did not lack one)


# KEYS: the queue's hash, its tenants, the tenant's list. ARGV: tenant, limit, ttl, units,
# entries. Refuses everything (0, units waiting) or takes everything (1, units waiting now).
_SUBMIT = """
local tenant, limit, ttl, units = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local waiting = tonumber(redis.call('HGET', KEYS[1], 'units:' .. tenant) or '0')
if waiting + units > limit then
  return {0, waiting}
end
for i = 5, #ARGV do
  redis.call('RPUSH', KEYS[3], ARGV[i])
end
local jobs = #ARGV - 4
redis.call('HINCRBY', KEYS[1], 'units:' .. tenant, units)
redis.call('HINCRBY', KEYS[1], 'jobs:' .. tenant, jobs)
redis.call('HINCRBY', KEYS[1], 'jobs', jobs)
redis.call('ZADD', KEYS[2], 'NX', redis.call('HGET', KEYS[1], 'clock') or '0', tenant)
for _, key in ipairs(KEYS) do
  redis.call('EXPIRE', key, ttl)
end
return {1, waiting + units}
"""

# KEYS: the queue's hash, its tenants, arq's queue, the pool's workers, its standby gateways,
# and with a budget its token bucket. ARGV: the tenants' list prefix, arq's job and result key
# prefixes, now (ms), arq's job expiry (ms), window per worker, stale heartbeat before (s),
# ttl, token rate (0: no budget), burst, most jobs to move.
_FEED = (
    ratelimit.TAKE_TOKEN_LUA
    + """
local prefix, job_prefix, result_prefix = ARGV[1], ARGV[2], ARGV[3]
local now, expiry, per_worker, stale = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local ttl, rate, burst, most = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]),
  tonumber(ARGV[11])
local live = redis.call('ZCOUNT', KEYS[4], stale, '+inf')
  + redis.call('ZCOUNT', KEYS[5], stale, '+inf')
local room = per_worker * math.max(1, live) - redis.call('ZCOUNT', KEYS[3], '-inf', now)
local fed, wait = {}, 0
while room > 0 and #fed < most do
  local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #head == 0 then break end
  local tenant, turn = head[1], tonumber(head[2])
  local list = prefix .. tenant
  local entry = redis.call('LPOP', list)
  if not entry then
    -- The tenant's list expired under it: forget what it counted.
    local lost = tonumber(redis.call('HGET', KEYS[1], 'jobs:' .. tenant) or '0')
    redis.call('HINCRBY', KEYS[1], 'jobs', -lost)
    redis.call('HDEL', KEYS[1], 'jobs:' .. tenant, 'units:' .. tenant)
    redis.call('ZREM', KEYS[2], tenant)
  else
    local first = string.find(entry, ' ', 1, true)
    local second = string.find(entry, ' ', first + 1, true)
    local units = tonumber(string.sub(entry, 1, first - 1))
    local id = string.sub(entry, first + 1, second - 1)
    -- Already queued or finished: dropped, and the tenant keeps its turn.
    local fresh = redis.call('EXISTS', job_prefix .. id, result_prefix .. id) == 0
    if fresh and rate > 0 then
      wait = take_token(KEYS[6], rate, burst)
      if wait > 0 then
        redis.call('LPUSH', list, entry)
        break
      end
    end
    if fresh then
      redis.call('SET', job_prefix .. id, string.sub(entry, second + 1), 'PX', expiry)
      redis.call('ZADD', KEYS[3], now, id)
      fed[#fed + 1] = id
      room = room - 1
      redis.call('HSET', KEYS[1], 'clock', turn)
    end
    redis.call('HINCRBY', KEYS[1], 'jobs', -1)
    redis.call('HINCRBY', KEYS[1], 'jobs:' .. tenant, -1)
    redis.call('HINCRBY', KEYS[1], 'units:' .. tenant, -units)
    if redis.call('LLEN', list) == 0 then
      redis.call('ZREM', KEYS[2], tenant)
      redis.call('HDEL', KEYS[1], 'jobs:' .. tenant, 'units:' .. tenant)
    elseif fresh then
      redis.call('ZADD', KEYS[2], turn + 1, tenant)
      redis.call('EXPIRE', list, ttl)
    end
  end
end
if #fed > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return {fed, tonumber(redis.call('HGET', KEYS[1], 'jobs') or '0'), tostring(wait)}
"""
)


# KEYS: the pool's tenants. ARGV: the tenants' list prefix. The enqueue time (ms) of the oldest
# job waiting, or false: each tenant's oldest is the head of its list, and its arq record ends
# with `"et":<ms>}` (arq writes the enqueue time last).
_OLDEST = """
local oldest = false
for _, tenant in ipairs(redis.call('ZRANGE', KEYS[1], 0, 9999)) do
  local head = redis.call('LINDEX', ARGV[1] .. tenant, 0)
  local since = head and tonumber(string.match(head, '"et":(%d+)}$'))
  if since and (not oldest or since < oldest) then
    oldest = since
  end
end
return oldest
"""


def _entry(function: str, job: Job, now_ms: int) -> bytes:
    """`<units> <job id> <arq job record>`: the record exactly as arq's enqueue_job writes it,
    with our JSON serializer, so a worker cannot tell a fed job from one arq queued."""
    if " " in job.job_id:
        raise ValueError(f"a job id has no spaces: {job.job_id!r}")
    record = serialize_job(
        function, (), job.payload.to_kwargs(), None, now_ms, serializer=serialize_job_record
    )
    return f"{job.units} {job.job_id} ".encode() + record


async def submit(
    redis: Redis,
    queue: FairQueue,
    function: str,
    jobs: Sequence[Job],
    tenant: str,
    quota: Quota,
) -> Fed | None:
    """Puts a tenant's jobs in the pool's fair queue, all or none (QuotaExceeded beyond the
    tenant's quota, TooLarge when they alone exceed it), then feeds arq's queue. Returns what
    that feed did, or None when it could not run (the feeders will)."""
    units = sum(job.units for job in jobs)
    if units > quota.limit:
        raise TooLarge(
            "over_quota",
            f"{units} {quota.unit} exceed the limit of {quota.limit} {quota.unit} waiting per "
            "tenant; send fewer at a time.",
        )
    now_ms = int(time.time() * 1000)
    pool = queue.pool.value
    accepted, waiting = await redis.eval(  # type: ignore[misc]
        _SUBMIT,
        3,
        keys.fair_queue(pool),
        keys.fair_tenants(pool),
        keys.fair_waiting(pool, tenant),
        tenant,
        str(quota.limit),
        str(keys.FAIR_QUEUE_TTL_SECONDS),
        str(units),
        *(_entry(function, job, now_ms) for job in jobs),  # type: ignore[arg-type]
    )
    if not accepted:
        metrics.REQUESTS_REJECTED.labels("quota_exceeded").inc()
        raise QuotaExceeded(
            "quota_exceeded",
            f"{waiting} {quota.unit} of yours are waiting to start and this request adds "
            f"{units}; the limit is {quota.limit} {quota.unit} waiting per tenant. Try again "
            f"in {quota.retry_after} s, when some have started.",
            retry_after=quota.retry_after,
        )
    # The jobs are recorded: a failure now only delays them until the next feed elsewhere.
    with suppress(*REDIS_ERRORS):
        return await feed(redis, queue)
    return None


async def feed(redis: Redis, queue: FairQueue, most: int = FEED_MOST) -> Fed:
    """Moves waiting jobs onto arq's queue, round robin across tenants, while the window has
    room (and the budget tokens)."""
    pool = queue.pool.value
    now = time.time()
    bucket = queue.budget
    redis_keys = [
        keys.fair_queue(pool),
        keys.fair_tenants(pool),
        queue.pool.queue,
        keys.workers(pool),
        keys.standby_workers(pool),
        *([bucket.key] if bucket else []),
    ]
    fed, waiting, wait = await redis.eval(  # type: ignore[misc]
        _FEED,
        len(redis_keys),
        *redis_keys,
        keys.fair_waiting(pool, ""),
        job_key_prefix,
        result_key_prefix,
        str(int(now * 1000)),
        str(expires_extra_ms),
        str(queue.window),
        str(heartbeats.stale_before(now, queue.heartbeat_interval)),
        str(keys.FAIR_QUEUE_TTL_SECONDS),
        str(bucket.per_second if bucket else 0),
        str(bucket.burst if bucket else 0),
        str(most),
    )
    found = Fed([job_id.decode() for job_id in fed], max(0, int(waiting)), float(wait))
    if bucket is not None and found.token_wait > 0 and found.waiting:
        # Work held back by the budget (the feeder then sleeps until the next token): what the
        # portal rate limit's panel and the deferral counter show.
        metrics.RATE_LIMIT_DEFERRALS.labels(bucket.name or bucket.key).inc()
    return found


async def oldest_waiting_ms(redis: Redis, pool: Pool) -> int | None:
    """When the oldest job still waiting in the pool's fair queue was submitted (epoch ms), or
    None when none waits: one Lua call, a list head per tenant with jobs waiting."""
    oldest = await redis.eval(  # type: ignore[misc]
        _OLDEST, 1, keys.fair_tenants(pool.value), keys.fair_waiting(pool.value, "")
    )
    return None if oldest is None else int(oldest)


class Feeder:
    """Feeds a pool's queue in the background: every `interval` while nothing waits; while
    jobs wait, as soon as the budget has a token, else every FEED_RETRY_SECONDS. A Redis
    outage is logged, never fatal."""

    def __init__(self, redis: Redis, queue: FairQueue, interval: float) -> None:
        self.redis = redis
        self.queue = queue
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def _delay(self, fed: Fed) -> float:
        if not fed.waiting:
            return self.interval
        if fed.token_wait:
            return min(self.interval, max(0.02, fed.token_wait))
        return min(self.interval, FEED_RETRY_SECONDS)

    async def _run(self) -> None:
        while True:
            delay = self.interval
            try:
                delay = self._delay(await feed(self.redis, self.queue))
            except REDIS_ERRORS as exc:
                logger.warning(
                    "feeding the queue failed",
                    extra={"pool": self.queue.pool.value, "error": type(exc).__name__},
                )
            await asyncio.sleep(delay)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"feeder-{self.queue.pool.value}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
