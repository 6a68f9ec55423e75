"""Job contracts: what the gateway puts on a queue is JSON a worker can validate."""

import asyncio
import json

import pytest
from pydantic import ValidationError

from esteira_core import jobs
from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings


def test_each_pool_has_its_own_arq_queue() -> None:
    assert jobs.Pool.RUPTURA.queue == "arq:queue:ruptura"
    assert jobs.Pool.SCRAPER.queue == "arq:queue:scraper"


def test_payloads_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        jobs.CanaryPayload.from_kwargs({"note": "x", "extra": 1})


@pytest.mark.integration
def test_enqueue_writes_a_json_job_on_the_pool_queue_once_per_id(redis_url: str) -> None:
    async def scenario() -> tuple[str | None, str | None, list[bytes], bytes]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        payload = jobs.CanaryPayload(note="hello")
        first = await jobs.enqueue(redis, jobs.Pool.SCRAPER, jobs.CANARY, payload, job_id="c-1")
        second = await jobs.enqueue(redis, jobs.Pool.SCRAPER, jobs.CANARY, payload, job_id="c-1")
        queued = await redis.zrange(jobs.SCRAPER_QUEUE, 0, -1)
        raw = await redis.get("arq:job:c-1")
        await redis.aclose()
        return first, second, queued, raw

    first, second, queued, raw = asyncio.run(scenario())
    assert (first, second, queued) == ("c-1", None, [b"c-1"])
    record = json.loads(raw)
    assert record["f"] == "canary" and record["k"] == {"payload": {"note": "hello"}}
