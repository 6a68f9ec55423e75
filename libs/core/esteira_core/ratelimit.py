"""Token buckets in Redis, shared by every replica: refilled at `per_second` tokens a second up to
`burst`. The clock is Redis's own, so replicas with skewed clocks still agree.

Two limits use them: the scrapers' global limit per portal host (the seed's was per worker,
10/h each, and grew with the replica count; this one doesn't), spent by the fair queue as it
feeds scrape jobs (esteira_core.fair) and by retries, and the gateway's per-tenant request
limit, which each gateway process takes a lease of tokens at a time (LeasedBuckets).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from esteira_core.redis import run_script

# The bucket's arithmetic, once, as Lua functions: the take scripts below and the fair queue's
# feed (esteira_core.fair, which spends the portal's tokens) include them. `take_tokens` takes up
# to `wanted` whole tokens (none when not even one is there: then the wait for one), after
# putting back `returned` tokens taken earlier and not spent.
TAKE_TOKEN_LUA = """
local function take_tokens(key, rate, burst, wanted, returned)
  local now_parts = redis.call('TIME')
  local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  -- `at` is stored as text to 14 digits (about 100 us): two takes within that time must not
  -- see time going backwards, which would leave a whole token a hair short of 1.
  local at = math.min(tonumber(state[2]) or now, now)
  tokens = math.min(burst, tokens + (now - at) * rate + returned)
  local granted = math.min(wanted, math.floor(tokens))
  local wait = 0
  if granted >= 1 then
    tokens = tokens - granted
  else
    granted = 0
    wait = (1 - tokens) / rate
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('EXPIRE', key, math.ceil(burst / rate) + 60)
  return granted, wait
end
local function take_token(key, rate, burst)
  local _, wait = take_tokens(key, rate, burst, 1, 0)
  return wait
end
"""
_TAKE = (
    TAKE_TOKEN_LUA + "return tostring(take_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])))\n"
)
_TAKE_MANY = (
    TAKE_TOKEN_LUA
    + """local granted, wait = take_tokens(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4]))
return {granted, tostring(wait)}
"""
)


async def take(redis: Redis, bucket: str, per_second: float, burst: int) -> float:
    """Takes a token from the bucket at key `bucket`: 0.0 when allowed now, else the seconds to
    wait before a token will be there (nothing is taken then)."""
    return float(await run_script(redis, _TAKE, [bucket], [str(per_second), str(burst)]))


@dataclass
class _Lease:
    tokens: int = 0  # taken from the shared bucket, not spent yet
    expires: float = 0.0
    window_started: float = 0.0
    takes: int = 0  # asked of this process in the window that started then
    takes_before: int = 0  # and in the window before it
    # One ask of the bucket at a time: requests that find no token while an ask is on its way
    # wait for its lease instead of each asking for one (the first asks would take the tokens
    # the later ones are refused).
    asking: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class LeasedBuckets:
    """This process's takes from shared token buckets, a few tokens at a time.

    The gateway takes a token from its tenant's bucket on every request; one Redis round trip
    for each was the largest part of a cheap request's CPU. Here a take that finds no token
    held asks the bucket for as many as were asked of this process over the last
    `lease_seconds` (at least one; at most what the rate refills in that time), and spends them
    locally for `lease_seconds` at most; what is left over goes back to the bucket with the
    next ask. A busy caller costs a round trip per lease, a quiet one one per take, as before.
    Every token spent came out of the shared bucket, so the limit holds across replicas; a
    replica holds at most a lease's worth back from the others, for `lease_seconds` at most."""

    per_second: float
    burst: int
    lease_seconds: float = 0.5
    _leases: dict[str, _Lease] = field(default_factory=dict)

    async def take(self, redis: Redis, bucket: str) -> float:
        """As `take`: 0.0 when allowed now, else the seconds to wait for a token."""
        now = time.monotonic()
        lease = self._leases.setdefault(bucket, _Lease())
        if now - lease.window_started >= self.lease_seconds:
            recent = now - lease.window_started < 2 * self.lease_seconds
            lease.takes_before = lease.takes if recent else 0
            lease.takes, lease.window_started = 0, now
        lease.takes += 1
        async with lease.asking:
            now = time.monotonic()
            if lease.tokens and now < lease.expires:
                lease.tokens -= 1
                return 0.0
            returned, lease.tokens = lease.tokens, 0
            most = max(1, min(self.burst, math.floor(self.per_second * self.lease_seconds)))
            wanted = min(most, max(lease.takes, lease.takes_before))
            granted, wait = await run_script(
                redis,
                _TAKE_MANY,
                [bucket],
                [str(self.per_second), str(self.burst), str(wanted), str(returned)],
            )
            if granted:
                lease.tokens = int(granted) - 1
                lease.expires = now + self.lease_seconds
            return float(wait)


@dataclass(frozen=True)
class Bucket:
    """A token bucket: its key, its refill rate (tokens a second), its size, and what it limits
    (the portal's host, in metrics)."""

    key: str
    per_second: float
    burst: int
    name: str = ""
