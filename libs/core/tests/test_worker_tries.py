"""A job's tries against a real redis-server: a draining process's hand-backs are no tries."""

import asyncio

import pytest
from arq.worker import Retry

from esteira_core import keys, worker
from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings

pytestmark = pytest.mark.integration


def test_a_job_handed_back_by_draining_processes_keeps_its_tries(redis_url: str) -> None:
    async def scenario() -> tuple[list[int], int]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        seen = []
        # arq's runs of one job: the first failed, the next two were handed back, then two more
        for run in range(1, 6):
            ctx = {"redis": redis, "job_id": "ruptura-x-0", "job_try": run}
            seen.append(await worker.tries(ctx))
            if run in (2, 3):
                with pytest.raises(Retry):
                    await worker.hand_back(ctx)
        ttl = await redis.ttl(keys.job_handbacks("ruptura-x-0"))
        await redis.aclose()
        return seen, ttl

    seen, ttl = asyncio.run(scenario())
    # Runs 2 and 3 were handed back: runs 3 and 4 are its second try again, run 5 its third.
    assert seen == [1, 2, 2, 2, 3]
    assert 0 < ttl <= worker.HANDBACKS_TTL_SECONDS
