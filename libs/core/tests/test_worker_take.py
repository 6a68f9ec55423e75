"""How a worker takes a job (esteira_core.worker.ArqWorker's one script), against a real
redis-server and real arq workers: competing workers run each job once; a job deferred, or held
by another worker, is left alone."""

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from esteira_core import jobs
from esteira_core.jobs import Pool
from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings
from esteira_core.worker import ArqWorker
from esteira_testing.workers import in_process_worker

pytestmark = pytest.mark.integration
QUEUE = Pool.RUPTURA.queue


def _worker(redis: ArqRedis, run: Callable[..., Awaitable[None]]) -> ArqWorker:
    return in_process_worker(redis, QUEUE, {"run": run}, max_jobs=4, poll_delay=0.01)


async def _until(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_competing_workers_run_each_job_once(redis_url: str) -> None:
    async def scenario() -> Counter[str]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        await redis.flushdb()
        runs: Counter[str] = Counter()

        async def run(ctx: dict[str, object], **_payload: object) -> None:
            runs[str(ctx["job_id"])] += 1
            await asyncio.sleep(0.005)  # long enough for the other workers to try it too

        for index in range(200):
            await jobs.enqueue(redis, Pool.RUPTURA, "run", jobs.CanaryPayload(), job_id=f"j{index}")
        workers = [_worker(redis, run) for _ in range(3)]
        running = [asyncio.create_task(w.async_run()) for w in workers]
        await _until(lambda: sum(runs.values()) >= 200 and not any(w.tasks for w in workers))
        await asyncio.sleep(0.2)  # a job run twice would be counted by now
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await redis.aclose()
        return runs

    runs = asyncio.run(scenario())
    assert len(runs) == 200
    assert set(runs.values()) == {1}


def test_a_deferred_job_and_one_held_elsewhere_are_left_alone(redis_url: str) -> None:
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        await redis.flushdb()
        ran: list[str] = []

        async def run(ctx: dict[str, object], **_payload: object) -> None:
            ran.append(str(ctx["job_id"]))

        await redis.enqueue_job("run", _job_id="later", _queue_name=QUEUE, _defer_by=3.0)
        await jobs.enqueue(redis, Pool.RUPTURA, "run", jobs.CanaryPayload(), job_id="held")
        await redis.set(in_progress_key_prefix + "held", b"1", px=6000)  # another worker's
        await jobs.enqueue(redis, Pool.RUPTURA, "run", jobs.CanaryPayload(), job_id="free")
        worker = _worker(redis, run)
        running = asyncio.create_task(worker.async_run())
        await _until(lambda: "free" in ran)
        await asyncio.sleep(0.5)
        early = list(ran)
        await _until(lambda: "later" in ran)
        after_defer = list(ran)
        await _until(lambda: "held" in ran)  # once the other worker's hold has run out
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await redis.aclose()
        return early, after_defer, ran

    early, after_defer, ran = asyncio.run(scenario())
    assert early == ["free"]
    assert "held" not in after_defer
    assert sorted(ran) == ["free", "held", "later"]


def test_a_running_job_whose_hold_was_lost_is_not_run_again_beside_itself(redis_url: str) -> None:
    """A Redis failover can lose the last writes to the primary, a running job's hold among
    them: the job is still queued (arq removes it once it ends) and looks free."""

    async def scenario() -> tuple[int, int]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        await redis.flushdb()
        release = asyncio.Event()
        runs: Counter[str] = Counter()

        async def run(ctx: dict[str, object], **_payload: object) -> None:
            runs[str(ctx["job_id"])] += 1
            await release.wait()

        await jobs.enqueue(redis, Pool.RUPTURA, "run", jobs.CanaryPayload(), job_id="long")
        worker = _worker(redis, run)
        running = asyncio.create_task(worker.async_run())
        await _until(lambda: runs["long"] == 1)
        await redis.delete(in_progress_key_prefix + "long")  # lost in the failover
        await asyncio.sleep(0.5)  # the worker polls its queue every 0.01 s
        during = runs["long"]
        release.set()
        await asyncio.sleep(0.5)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await redis.aclose()
        return during, runs["long"]

    assert asyncio.run(scenario()) == (1, 1)
