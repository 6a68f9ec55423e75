"""Token buckets against a real redis-server."""

import asyncio

import pytest

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
