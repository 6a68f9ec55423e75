"""Queue statistics against a real redis-server and a real arq worker: a running job is counted
once, as running, though arq keeps it in the queue's sorted set until it finishes."""

import asyncio
import time

import pytest

from esteira_core import heartbeats, jobs
from esteira_core.jobs import Pool
from esteira_core.queues import QueueStats, queue_stats
from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings
from esteira_testing.workers import in_process_worker

pytestmark = pytest.mark.integration
INTERVAL = 5.0


def test_running_jobs_count_as_in_progress_not_as_ready(redis_url: str) -> None:
    async def scenario() -> tuple[int, QueueStats, QueueStats, QueueStats]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        release = asyncio.Event()
        running = 0

        async def hold(_ctx: dict[str, object], **_payload: object) -> None:
            nonlocal running
            running += 1
            await release.wait()
            running -= 1

        for index in range(5):
            await jobs.enqueue(
                redis, Pool.SCRAPER, "hold", jobs.CanaryPayload(), job_id=f"j{index}"
            )
        worker = in_process_worker(
            redis, Pool.SCRAPER.queue, {"hold": hold}, max_jobs=3, poll_delay=0.05
        )
        running_worker = asyncio.create_task(worker.async_run())
        deadline = time.monotonic() + 30
        while running < 3:
            assert time.monotonic() < deadline, "the worker did not start 3 jobs"
            await asyncio.sleep(0.05)
        queued = await redis.zcard(Pool.SCRAPER.queue)  # arq still holds the running jobs
        before = await queue_stats(redis, Pool.SCRAPER, INTERVAL)  # no report yet: all ready
        await heartbeats.beat(redis, Pool.SCRAPER.value, "w-1", INTERVAL, list(worker.tasks))
        during = await queue_stats(redis, Pool.SCRAPER, INTERVAL)
        # A report that outlives its jobs (they finished between two beats) never goes below 0.
        await heartbeats.beat(redis, Pool.SCRAPER.value, "w-2", INTERVAL, ["a", "b", "c", "d"])
        stale = await queue_stats(redis, Pool.SCRAPER, INTERVAL)
        release.set()
        running_worker.cancel()
        await worker.close()
        await redis.aclose()
        return queued, before, during, stale

    queued, before, during, stale = asyncio.run(scenario())
    assert queued == 5
    assert (before.ready, before.in_progress) == (5, 0)
    assert (during.ready, during.in_progress, during.workers_online) == (2, 3, 1)
    assert during.ready + during.in_progress == queued
    assert during.oldest_ready_age_seconds > 0
    assert (stale.ready, stale.in_progress, stale.oldest_ready_age_seconds) == (0, 7, 0.0)
