"""Both worker shells as real processes on a real redis-server: they consume their own queue,
beat, export metrics on their own port and drain on SIGTERM."""

import asyncio
import signal
import time

import httpx
import pytest
from arq.jobs import Job

from esteira_cli.processes import free_port
from esteira_core import heartbeats, jobs
from esteira_core.redis import create_redis
from esteira_core.serialization import deserialize_job
from esteira_core.settings import CoreSettings

pytestmark = pytest.mark.integration


async def _run_canary(redis_url: str, pool: jobs.Pool) -> tuple[dict, int]:
    redis = create_redis(CoreSettings(redis_url=redis_url))
    try:
        job_id = await jobs.enqueue(redis, pool, jobs.CANARY, jobs.CanaryPayload(note="ping"))
        assert job_id is not None
        result = await Job(
            job_id, redis, _queue_name=pool.queue, _deserializer=deserialize_job
        ).result(timeout=30, poll_delay=0.1)
        online = await heartbeats.workers_online(redis, pool.value, 0.5)
        return result, online
    finally:
        await redis.aclose()


@pytest.mark.parametrize("pool", list(jobs.Pool))
def test_a_worker_serves_its_own_queue_and_reports_it(
    pool, redis_url, tmp_path, esteira_processes
) -> None:
    metrics_port = free_port()
    env = {
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
        "ESTEIRA_METRICS_PORT": str(metrics_port),
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    }
    worker = esteira_processes(
        f"{pool.value}-worker", ["worker", pool.value], env, port=metrics_port
    )

    result, online = asyncio.run(_run_canary(redis_url, pool))
    assert result["pool"] == pool.value and result["note"] == "ping"
    assert online == 1

    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert (
        f'esteira_jobs_total{{function="canary",outcome="success",queue="{pool.queue}"}} 1.0'
        in text
    )
    assert f'esteira_job_queue_wait_seconds_count{{queue="{pool.queue}"}} 1.0' in text

    assert worker.stop() == 0
    assert "worker stopped" in worker.output()

    async def online_after() -> int:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        count = await heartbeats.workers_online(redis, pool.value, 0.5)
        await redis.aclose()
        return count

    assert asyncio.run(online_after()) == 0


def test_a_worker_does_not_take_the_other_pools_jobs(
    redis_url, tmp_path, esteira_processes
) -> None:
    metrics_port = free_port()
    env = {
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
        "ESTEIRA_METRICS_PORT": str(metrics_port),
    }
    esteira_processes("ruptura-worker", ["worker", "ruptura"], env, port=metrics_port)

    async def enqueue_for_scraper() -> int:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        await jobs.enqueue(redis, jobs.Pool.SCRAPER, jobs.CANARY, jobs.CanaryPayload())
        await asyncio.sleep(1.5)
        waiting = await redis.zcard(jobs.SCRAPER_QUEUE)
        await redis.aclose()
        return waiting

    assert asyncio.run(enqueue_for_scraper()) == 1
    assert time.monotonic() > 0


def test_a_worker_that_lost_redis_still_stops_on_sigterm(
    own_redis_server, tmp_path, esteira_processes
) -> None:
    """Kubernetes sends SIGTERM to a pod whose Redis is gone too; the worker must not wait for
    the SIGKILL at the end of the grace period."""
    metrics_port = free_port()
    env = {
        "ESTEIRA_REDIS_URL": own_redis_server.url,
        "ESTEIRA_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
        "ESTEIRA_METRICS_PORT": str(metrics_port),
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    }
    worker = esteira_processes("ruptura-worker", ["worker", "ruptura"], env, port=metrics_port)
    own_redis_server.kill()
    deadline = time.monotonic() + 60
    while "lost Redis" not in worker.output():
        assert time.monotonic() < deadline, worker.output()[-2000:]
        time.sleep(0.2)
    # At once: in the pause before the next attempt, when arq's own handlers are not running.
    assert worker.stop(grace=10) in (0, -signal.SIGTERM)
