"""Token buckets in Redis, shared by every replica: refilled at `per_second` tokens a second up to
`burst`. The clock is Redis's own, so replicas with skewed clocks still agree.

Two limits use them: the scrapers' global limit per portal host (the seed's was per worker,
10/h each, and grew with the replica count; this one doesn't), spent by the fair queue as it
feeds scrape jobs (esteira_core.fair) and by retries, and the gateway's per-tenant request
limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

# The bucket's arithmetic, once, as a Lua function: the take script below and the fair queue's
# feed (esteira_core.fair, which spends the portal's tokens) both include it.
TAKE_TOKEN_LUA = """
local function take_token(key, rate, burst)
  local now_parts = redis.call('TIME')
  local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  -- `at` is stored as text to 14 digits (about 100 us): two takes within that time must not
  -- see time going backwards, which would leave a whole token a hair short of 1.
  local at = math.min(tonumber(state[2]) or now, now)
  tokens = math.min(burst, tokens + (now - at) * rate)
  local wait = 0
  if tokens >= 1 then
    tokens = tokens - 1
  else
    wait = (1 - tokens) / rate
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('EXPIRE', key, math.ceil(burst / rate) + 60)
  return wait
end
"""
_TAKE = (
    TAKE_TOKEN_LUA + "return tostring(take_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])))\n"
)
# Called by its digest (EVALSHA), as every request of the gateway takes a token: sending the
# script's text each time would make Redis read and hash it each time.
_TAKE_SHA1 = hashlib.sha1(_TAKE.encode()).hexdigest()


async def take(redis: Redis, bucket: str, per_second: float, burst: int) -> float:
    """Takes a token from the bucket at key `bucket`: 0.0 when allowed now, else the seconds to
    wait before a token will be there (nothing is taken then)."""
    arguments = (1, bucket, str(per_second), str(burst))
    try:
        wait = await redis.evalsha(_TAKE_SHA1, *arguments)  # type: ignore[misc]
    except NoScriptError:  # a Redis that has not seen it yet (or was restarted): teach it once
        await redis.script_load(_TAKE)
        wait = await redis.evalsha(_TAKE_SHA1, *arguments)  # type: ignore[misc]
    return float(wait)


@dataclass(frozen=True)
class Bucket:
    """A token bucket: its key, its refill rate (tokens a second), its size, and what it limits
    (the portal's host, in metrics)."""

    key: str
    per_second: float
    burst: int
    name: str = ""
