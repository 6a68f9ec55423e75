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
  running: arq keeps a running job in its sorted set) take fewer than `window` places per
  worker online (a job takes one place per `units_per_place` units it carries, at least one:
  a big job counts for the work it holds, not as one)
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
guarantees). Feeding happens on each submit, as jobs end (esteira_core.worker: each time the
jobs a process ends free another window/4 places), and in a Feeder loop in each worker and
gateway: every heartbeat interval, and while jobs wait as soon as a token is due or every
FEED_RETRY_SECONDS.
Any of them may feed; each feed is one Lua call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import orjson
from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis

from esteira_core import heartbeats, keys, metrics, ratelimit
from esteira_core.errors import QuotaExceeded, TooLarge
from esteira_core.jobs import JobPayload, Pool
from esteira_core.redis import REDIS_ERRORS, run_script
from esteira_core.serialization import serialize_job as serialize_job_record

logger = logging.getLogger(__name__)

# While jobs wait, the Feeder tries again this soon (a job ending feeds at once anyway).
FEED_RETRY_SECONDS = 0.2
# Most jobs one feed moves: bounds the time one Lua call holds Redis.
FEED_MOST = 1000


@dataclass(frozen=True)
class FairQueue:
    """How a pool's fair queue feeds arq: `window` places in arq's hands per worker online
    (workers known from heartbeats every `heartbeat_interval`), a job taking one place per
    `units_per_place` units (at least one), and the token `budget` a job spends when fed, if
    any."""

    pool: Pool
    window: int
    heartbeat_interval: float
    budget: ratelimit.Bucket | None = None
    units_per_place: int = 1

    def places(self, units: int) -> int:
        """The places in the window of a job of `units` units (what the feed counts)."""
        return max(1, -(-units // self.units_per_place))


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
class Record:
    """What submitted jobs belong to (a ruptura session), written with them, all or none: a
    hash of `fields` kept `ttl` seconds, whose `member` is listed in the sorted set `index`
    (scored `score`) for as long. Neither exists unless its jobs were taken."""

    key: str
    fields: Mapping[str, str | int | float]
    ttl: int
    index: str
    member: str
    score: float

    def encoded(self) -> bytes:
        flat = [str(item) for pair in self.fields.items() for item in pair]
        return orjson.dumps(
            {"fields": flat, "ttl": str(self.ttl), "member": self.member, "score": repr(self.score)}
        )


@dataclass(frozen=True)
class Fed:
    job_ids: list[str]  # moved onto arq's queue by this feed, in the order they were served
    waiting: int  # jobs still waiting in the fair queue
    token_wait: float  # seconds until the budget has a token (0: feeding did not lack one)


# The feed, as a Lua function: the feed script calls it, and so does the submit script, so a
# submission and the feed that follows it are one round trip. `queue` is the queue's hash,
# `tenants` its tenants, `arq_queue` arq's queue, `workers` and `standbys` the pool's worker and
# standby heartbeats, `bucket` the budget's token bucket (nil without a budget); `prefix` the
# tenants' list prefix, `job_prefix` and `result_prefix` arq's job and result key prefixes;
# `now` (ms), `expiry` arq's job expiry (ms), the window per worker, `stale` the stale
# heartbeat's score (s), the ttl, the token rate (0: no budget), its burst, most jobs to move.
# Returns the ids fed, the jobs still waiting and the wait for a token.
_FEED_LUA = (
    ratelimit.TAKE_TOKEN_LUA
    + """
local function taken(arq_queue, places, now)
  local due = redis.call('ZRANGEBYSCORE', arq_queue, '-inf', now)
  local count = #due
  if count > 0 and redis.call('EXISTS', places) == 1 then
    for start = 1, count, 1000 do
      local ids = {unpack(due, start, math.min(start + 999, count))}
      for _, weight in ipairs(redis.call('HMGET', places, unpack(ids))) do
        if weight then count = count + tonumber(weight) - 1 end
      end
    end
  end
  return count
end

local function feed(queue, tenants, arq_queue, workers, standbys, bucket, places, prefix,
    job_prefix, result_prefix, now, expiry, per_worker, stale, ttl, rate, burst, most,
    units_per_place)
  local live = redis.call('ZCOUNT', workers, stale, '+inf')
    + redis.call('ZCOUNT', standbys, stale, '+inf')
  local room = per_worker * math.max(1, live) - taken(arq_queue, places, now)
  local fed, wait = {}, 0
  while room > 0 and #fed < most do
    local head = redis.call('ZRANGE', tenants, 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    local tenant, turn = head[1], tonumber(head[2])
    local list = prefix .. tenant
    local entry = redis.call('LPOP', list)
    if not entry then
      -- The tenant's list expired under it: forget what it counted.
      local lost = tonumber(redis.call('HGET', queue, 'jobs:' .. tenant) or '0')
      redis.call('HINCRBY', queue, 'jobs', -lost)
      redis.call('HDEL', queue, 'jobs:' .. tenant, 'units:' .. tenant)
      redis.call('ZREM', tenants, tenant)
    else
      local first = string.find(entry, ' ', 1, true)
      local second = string.find(entry, ' ', first + 1, true)
      local units = tonumber(string.sub(entry, 1, first - 1))
      local id = string.sub(entry, first + 1, second - 1)
      -- Already queued or finished: dropped, and the tenant keeps its turn.
      local fresh = redis.call('EXISTS', job_prefix .. id, result_prefix .. id) == 0
      if fresh and rate > 0 then
        wait = take_token(bucket, rate, burst)
        if wait > 0 then
          redis.call('LPUSH', list, entry)
          break
        end
      end
      if fresh then
        redis.call('SET', job_prefix .. id, string.sub(entry, second + 1), 'PX', expiry)
        redis.call('ZADD', arq_queue, now, id)
        fed[#fed + 1] = id
        local weight = math.max(1, math.ceil(units / units_per_place))
        if weight > 1 then
          redis.call('HSET', places, id, weight)
          redis.call('EXPIRE', places, ttl)
        end
        room = room - weight
        redis.call('HSET', queue, 'clock', turn)
      end
      redis.call('HINCRBY', queue, 'jobs', -1)
      redis.call('HINCRBY', queue, 'jobs:' .. tenant, -1)
      redis.call('HINCRBY', queue, 'units:' .. tenant, -units)
      if redis.call('LLEN', list) == 0 then
        redis.call('ZREM', tenants, tenant)
        redis.call('HDEL', queue, 'jobs:' .. tenant, 'units:' .. tenant)
      elseif fresh then
        redis.call('ZADD', tenants, turn + 1, tenant)
        redis.call('EXPIRE', list, ttl)
      end
    end
  end
  if #fed > 0 then
    redis.call('EXPIRE', queue, ttl)
    redis.call('EXPIRE', tenants, ttl)
  end
  -- Forget the places of jobs arq no longer holds (ended), now and then.
  if redis.call('HLEN', places) > 4 * per_worker * math.max(1, live) then
    for _, id in ipairs(redis.call('HKEYS', places)) do
      if not redis.call('ZSCORE', arq_queue, id) then redis.call('HDEL', places, id) end
    end
  end
  return {fed, tonumber(redis.call('HGET', queue, 'jobs') or '0'), tostring(wait)}
end
"""
)
# KEYS: the queue's hash, its tenants, arq's queue, the pool's workers, its standby gateways,
# the places of big jobs fed, and with a budget its token bucket. ARGV: the feed's arguments,
# in `feed`'s order.
_FEED = (
    _FEED_LUA
    + """return feed(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7], KEYS[6], ARGV[1],
  ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8]),
  tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]))
"""
)

# KEYS: the tenant's list, the record's hash and its index (both unused without a record), then
# the feed's keys. ARGV: tenant, limit, units, the record ('' without one), then the feed's
# arguments, then the entries. Refuses everything ({0, units waiting}), or writes the record,
# takes every job and feeds ({1, units waiting now, then what the feed returns}); with no job,
# only writes the record.
_SUBMIT = (
    _FEED_LUA
    + """
local tenant, limit, units = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl = tonumber(ARGV[12])
local waiting = tonumber(redis.call('HGET', KEYS[4], 'units:' .. tenant) or '0')
if waiting + units > limit then
  return {0, waiting}
end
if ARGV[4] ~= '' then
  local record = cjson.decode(ARGV[4])
  redis.call('HSET', KEYS[2], unpack(record.fields))
  redis.call('EXPIRE', KEYS[2], record.ttl)
  redis.call('ZADD', KEYS[3], record.score, record.member)
  redis.call('EXPIRE', KEYS[3], record.ttl)
end
local first_entry = 5 + 12
local jobs = #ARGV - first_entry + 1
if jobs == 0 then
  return {1, waiting, {}, tonumber(redis.call('HGET', KEYS[4], 'jobs') or '0'), '0'}
end
for i = first_entry, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
redis.call('HINCRBY', KEYS[4], 'units:' .. tenant, units)
redis.call('HINCRBY', KEYS[4], 'jobs:' .. tenant, jobs)
redis.call('HINCRBY', KEYS[4], 'jobs', jobs)
redis.call('ZADD', KEYS[5], 'NX', redis.call('HGET', KEYS[4], 'clock') or '0', tenant)
for _, key in ipairs({KEYS[1], KEYS[4], KEYS[5]}) do
  redis.call('EXPIRE', key, ttl)
end
local fed = feed(KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[10], KEYS[9], ARGV[5],
  ARGV[6], ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10]), ARGV[11], ttl, tonumber(ARGV[13]),
  tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]))
return {1, waiting + units, fed[1], fed[2], fed[3]}
"""
)


# A Lua function: the enqueue time (ms) of the oldest job waiting in a pool's fair queue, or
# false. Each tenant's oldest is the head of its list, whose arq record ends with `"et":<ms>}`
# (arq writes the enqueue time last). esteira_core.queues reads it with the queue's stats.
OLDEST_WAITING_LUA = """
local function oldest_waiting(tenants, prefix)
  local oldest = false
  for _, tenant in ipairs(redis.call('ZRANGE', tenants, 0, 9999)) do
    local head = redis.call('LINDEX', prefix .. tenant, 0)
    local since = head and tonumber(string.match(head, '"et":(%d+)}$'))
    if since and (not oldest or since < oldest) then
      oldest = since
    end
  end
  return oldest
end
"""


def _arq_record(function: str, job: Job, now_ms: int) -> bytes:
    """The job's arq record exactly as arq's enqueue_job writes it, with our JSON serializer, so
    a worker cannot tell a fed job from one arq queued."""
    return serialize_job(
        function, (), job.payload.to_kwargs(), None, now_ms, serializer=serialize_job_record
    )


def _entry(function: str, job: Job, now_ms: int) -> bytes:
    """`<units> <job id> <arq job record>`."""
    if " " in job.job_id:
        raise ValueError(f"a job id has no spaces: {job.job_id!r}")
    return f"{job.units} {job.job_id} ".encode() + _arq_record(function, job, now_ms)


async def submit(
    redis: Redis,
    queue: FairQueue,
    function: str,
    jobs: Sequence[Job],
    tenant: str,
    quota: Quota,
    record: Record | None = None,
) -> Fed:
    """Puts a tenant's jobs in the pool's fair queue, all or none (QuotaExceeded beyond the
    tenant's quota, TooLarge when they alone exceed it), with the `record` they belong to, then
    feeds arq's queue, in one script (one round trip: the gateway submits on every POST; and
    no record without its jobs, nor jobs without their record, whatever dies in between).
    Returns what that feed did."""
    units = sum(job.units for job in jobs)
    if units > quota.limit:
        raise TooLarge(
            "over_quota",
            f"{units} {quota.unit} exceed the limit of {quota.limit} {quota.unit} waiting per "
            "tenant; send fewer at a time.",
        )
    now = time.time()
    now_ms = int(now * 1000)
    feed_keys, feed_arguments = _feed_call(queue, now, FEED_MOST)
    accepted, waiting, *fed = await run_script(
        redis,
        _SUBMIT,
        [
            keys.fair_waiting(queue.pool.value, tenant),
            record.key if record else "",
            record.index if record else "",
            *feed_keys,
        ],
        [
            tenant,
            str(quota.limit),
            str(units),
            record.encoded() if record else "",
            *feed_arguments,
            *(_entry(function, job, now_ms) for job in jobs),
        ],
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
    return _fed(queue, fed)


async def feed(redis: Redis, queue: FairQueue, most: int = FEED_MOST) -> Fed:
    """Moves waiting jobs onto arq's queue, round robin across tenants, while the window has
    room (and the budget tokens)."""
    feed_keys, feed_arguments = _feed_call(queue, time.time(), most)
    return _fed(queue, await run_script(redis, _FEED, feed_keys, feed_arguments))


# KEYS: a job's arq record, its result, arq's queue. ARGV: the result as it was read, the job's
# record, its expiry (ms), now (ms), the job's id. Nothing happens unless the result is still
# that one and no record of the job waits.
_REQUEUE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
return 1
"""


async def requeue(redis: Redis, queue: FairQueue, function: str, job: Job, finished: bytes) -> bool:
    """Puts a job arq finished back on arq's queue, at once, when its work was lost after all
    (its result, `finished`, read just before, is dropped; arq would refuse the id while it is
    there). False when it is not that job's result any more, or the job is queued again
    already. Outside the fair queue's turns: this is the end of work it served already."""
    now_ms = int(time.time() * 1000)
    requeued: int = await run_script(
        redis,
        _REQUEUE,
        [job_key_prefix + job.job_id, result_key_prefix + job.job_id, queue.pool.queue],
        [
            finished,
            _arq_record(function, job, now_ms),
            str(expires_extra_ms),
            str(now_ms),
            job.job_id,
        ],
    )
    return bool(requeued)


def _feed_call(queue: FairQueue, now: float, most: int) -> tuple[list[str], list[str]]:
    """The keys and arguments of `feed` in the scripts, in its order."""
    pool = queue.pool.value
    bucket = queue.budget
    feed_keys = [
        keys.fair_queue(pool),
        keys.fair_tenants(pool),
        queue.pool.queue,
        keys.workers(pool),
        keys.standby_workers(pool),
        keys.fair_places(pool),
        *([bucket.key] if bucket else []),
    ]
    arguments = [
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
        str(queue.units_per_place),
    ]
    return feed_keys, arguments


def _fed(queue: FairQueue, result: Sequence[Any]) -> Fed:
    fed, waiting, wait = result
    found = Fed([job_id.decode() for job_id in fed], max(0, int(waiting)), float(wait))
    bucket = queue.budget
    if bucket is not None and found.token_wait > 0 and found.waiting:
        # Work held back by the budget (the feeder then sleeps until the next token): what the
        # portal rate limit's panel and the deferral counter show.
        metrics.RATE_LIMIT_DEFERRALS.labels(bucket.name or bucket.key).inc()
    return found


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
