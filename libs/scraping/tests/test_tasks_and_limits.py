"""Coalescing, task updates and the global rate limit on a real redis-server."""

import asyncio

import pytest

from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings
from esteira_scraping import tasks
from esteira_scraping.runner import ScrapeLimits

pytestmark = pytest.mark.integration


def test_concurrent_lookups_of_one_os_share_one_task_until_it_ends(redis_url) -> None:
    async def scenario():
        redis = create_redis(CoreSettings(redis_url=redis_url))
        joined = await asyncio.gather(
            *(tasks.start_or_join(redis, "123", f"t{i}", active_ttl=60) for i in range(20))
        )
        other = await tasks.start_or_join(redis, "456", "t", active_ttl=60)
        first = joined[0].task_id
        await tasks.update(redis, first, status="in_progress", progress=40)
        running = await tasks.get(redis, first)
        await tasks.finish(redis, first, "123", status="success", result={"ok": True})
        after = await tasks.start_or_join(redis, "123", "t", active_ttl=60)
        finished = await tasks.get(redis, first)
        await redis.aclose()
        return joined, other, running, after, finished

    joined, other, running, after, finished = asyncio.run(scenario())
    assert len({j.task_id for j in joined}) == 1
    assert sum(j.created for j in joined) == 1
    assert other.created and other.task_id != joined[0].task_id
    assert running["status"] == "in_progress" and running["progress"] == 40 and running["shared"]
    assert finished["status"] == "success" and finished["result"] == {"ok": True}
    assert after.created and after.task_id != joined[0].task_id  # a new scrape after the end


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    limits = ScrapeLimits(backoff_seconds=2, backoff_max_seconds=30)
    for attempt, low in ((1, 2), (2, 4), (3, 8)):
        delays = [limits.backoff(attempt) for _ in range(50)]
        assert all(low <= d <= low + 2 for d in delays)
        assert len(set(delays)) > 1
    assert limits.backoff(10) == 30
