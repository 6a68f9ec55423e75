"""Heartbeats against a real redis-server."""

import asyncio

import pytest

from esteira_core import heartbeats, keys
from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings

pytestmark = pytest.mark.integration


def test_a_worker_is_online_while_it_beats_and_gone_after_it_leaves(redis_url: str) -> None:
    async def scenario() -> tuple[int, int, int]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        beat = heartbeats.Heartbeat(redis, "ruptura", interval=0.2, member="w-1")
        await beat.start()
        online = await heartbeats.workers_online(redis, "ruptura", 0.2)
        other_pool = await heartbeats.workers_online(redis, "scraper", 0.2)
        await beat.stop()
        after = await heartbeats.workers_online(redis, "ruptura", 0.2)
        await redis.aclose()
        return online, other_pool, after

    assert asyncio.run(scenario()) == (1, 0, 0)


def test_stale_beats_do_not_count_and_are_trimmed(redis_url: str) -> None:
    async def scenario() -> tuple[int, int]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        await redis.zadd(keys.workers("scraper"), {"dead-worker": 1.0})  # last seen in 1970
        await heartbeats.beat(redis, "scraper", "live-worker", interval=5)
        online = await heartbeats.workers_online(redis, "scraper", 5)
        members = await redis.zcard(keys.workers("scraper"))
        await redis.aclose()
        return online, members

    assert asyncio.run(scenario()) == (1, 1)
