"""Token buckets against a real redis-server."""

import asyncio

import pytest
import redis

from esteira_core import ratelimit
from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings

pytestmark = pytest.mark.integration


def test_the_bucket_lets_a_burst_through_then_says_how_long_to_wait(redis_url) -> None:
    async def scenario() -> list[float]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        waits = [await ratelimit.take(redis, "bucket:1", per_second=0.1, burst=2) for _ in range(3)]
        other_host = await ratelimit.take(redis, "bucket:2", per_second=0.1, burst=2)
        await redis.aclose()
        return [*waits, other_host]

    first, second, third, other_host = asyncio.run(scenario())
    assert (first, second, other_host) == (0.0, 0.0, 0.0)
    assert 9 < third <= 10  # one token every 10 s


def _evalsha_calls(redis_url: str) -> int:
    stats = redis.Redis.from_url(redis_url).info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0))


def test_leases_cost_a_busy_caller_few_round_trips_and_never_more_than_the_bucket(
    redis_url,
) -> None:
    # Almost no refill: what the two replicas let through is what the bucket held (50).
    def replica() -> ratelimit.LeasedBuckets:
        return ratelimit.LeasedBuckets(per_second=0.01, burst=50, lease_seconds=1000)

    async def scenario() -> tuple[list[float], list[float], int]:
        client = create_redis(CoreSettings(redis_url=redis_url))
        first, second = replica(), replica()
        before = _evalsha_calls(redis_url)
        waits_first = [await first.take(client, "bucket:lease") for _ in range(40)]
        round_trips = _evalsha_calls(redis_url) - before
        waits_second = [await second.take(client, "bucket:lease") for _ in range(40)]
        await client.aclose()
        return waits_first, waits_second, round_trips

    first, second, round_trips = asyncio.run(scenario())
    assert first == [0.0] * 40
    assert round_trips <= 10  # leases of up to 10 tokens (what 1000 s refill), not 40 takes
    allowed = first.count(0.0) + second.count(0.0)
    assert 40 < allowed <= 50
    assert all(wait > 0 for wait in second[second.count(0.0) :])  # refused once it is empty


def test_tokens_left_in_an_expired_lease_go_back_to_the_bucket(redis_url, monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: clock[0])

    async def scenario() -> tuple[int, int, int]:
        client = create_redis(CoreSettings(redis_url=redis_url))
        busy = ratelimit.LeasedBuckets(per_second=0.01, burst=20, lease_seconds=1000)
        for _ in range(8):
            assert await busy.take(client, "bucket:back") == 0.0
        held = busy._leases["bucket:back"].tokens
        clock[0] += 5000  # the lease expires unspent; the next take gives it back
        assert await busy.take(client, "bucket:back") == 0.0
        other = ratelimit.LeasedBuckets(per_second=0.01, burst=20, lease_seconds=1000)
        drained = [await other.take(client, "bucket:back") for _ in range(30)].count(0.0)
        still_held = busy._leases["bucket:back"].tokens
        await client.aclose()
        return held, drained, still_held

    held, drained, still_held = asyncio.run(scenario())
    assert held > 0
    # 9 spent by the busy replica, what it holds now, and the rest drained by the other.
    assert 9 + still_held + drained == 20


def test_concurrent_takes_share_a_lease_instead_of_starving_each_other(redis_url) -> None:
    # 50 requests at once within a burst of 60: every one is allowed. (Were each to ask the
    # bucket for its own lease, the first few would take every token and the rest be refused.)
    async def scenario() -> list[float]:
        client = create_redis(CoreSettings(redis_url=redis_url))
        leases = ratelimit.LeasedBuckets(per_second=40, burst=60, lease_seconds=0.5)
        waits = await asyncio.gather(*(leases.take(client, "bucket:crowd") for _ in range(50)))
        await client.aclose()
        return list(waits)

    assert asyncio.run(scenario()) == [0.0] * 50
