"""The fair queue against a real redis-server: tenants take turns, the window and the token
budget decide how much reaches arq's queue, a job is fed once, and quotas refuse whole."""

import json
import re
import time
from typing import Any

import pytest
from arq.constants import job_key_prefix, result_key_prefix
from redis.asyncio import Redis

from esteira_core import fair, heartbeats, keys, ratelimit
from esteira_core.errors import QuotaExceeded, TooLarge
from esteira_core.jobs import CANARY, CanaryPayload, Pool
from esteira_core.queues import queue_stats
from esteira_testing.scenarios import on_redis

pytestmark = pytest.mark.integration
INTERVAL = 5.0
POOL = Pool.SCRAPER
QUOTA = fair.Quota(1000, "jobs", 7)


def _queue(window: int = 1, budget: ratelimit.Bucket | None = None) -> fair.FairQueue:
    return fair.FairQueue(POOL, window, INTERVAL, budget)


def _jobs(prefix: str, count: int, units: int = 1) -> list[fair.Job]:
    return [
        fair.Job(f"{prefix}{i}", CanaryPayload(note=f"{prefix}{i}"), units) for i in range(count)
    ]


async def _submit(
    redis: Redis, queue: fair.FairQueue, tenant: str, jobs: list[fair.Job], quota=QUOTA
) -> fair.Fed | None:
    return await fair.submit(redis, queue, CANARY, jobs, tenant, quota)


async def _finish(redis: Redis, job_ids: list[str]) -> None:
    """What arq does when a job ends: off the queue, its record gone."""
    for job_id in job_ids:
        await redis.zrem(POOL.queue, job_id)
        await redis.delete(job_key_prefix + job_id)


async def _serve_one_at_a_time(redis: Redis, queue: fair.FairQueue, first: list[str]) -> list[str]:
    """Feeds with a window of one job, finishing each before the next: the order served."""
    served = list(first)
    await _finish(redis, first)
    while True:
        fed = await fair.feed(redis, queue)
        if not fed.job_ids:
            return served
        served += fed.job_ids
        await _finish(redis, fed.job_ids)


def test_tenants_take_turns_whatever_their_backlogs(redis_url: str) -> None:
    async def scenario(redis: Redis) -> tuple[list[str], int, int]:
        queue = _queue(window=1)
        first = await _submit(redis, queue, "a", _jobs("a", 4))
        await _submit(redis, queue, "b", _jobs("b", 1))
        await _submit(redis, queue, "c", _jobs("c", 2))
        assert first is not None
        served = await _serve_one_at_a_time(redis, queue, first.job_ids)
        return served, await redis.zcard(keys.fair_tenants(POOL.value)), first.waiting

    served, tenants_left, waiting_after_first = on_redis(redis_url, scenario)
    assert waiting_after_first == 3
    assert served == ["a0", "b0", "c0", "a1", "c1", "a2", "a3"]
    assert tenants_left == 0


def test_a_tenant_that_arrives_is_served_within_one_round(redis_url: str) -> None:
    async def scenario(redis: Redis) -> list[str]:
        queue = _queue(window=1)
        fed = await _submit(redis, queue, "a", _jobs("a", 20))
        await _submit(redis, queue, "b", _jobs("b", 20))
        served = fed.job_ids if fed else []
        for _ in range(7):  # a and b alternate for a while
            await _finish(redis, served[-1:])
            served += (await fair.feed(redis, queue)).job_ids
        await _submit(redis, queue, "z", _jobs("z", 1))
        after: list[str] = []
        for _ in range(3):
            await _finish(redis, (served + after)[-1:])
            after += (await fair.feed(redis, queue)).job_ids
        return after

    after = on_redis(redis_url, scenario)
    # Two tenants were active: the newcomer's job is among the next two served, though it
    # sorts last by name and the others have 13 jobs each still waiting.
    assert "z0" in after[:2]


def test_the_window_bounds_arqs_due_jobs_per_worker_online(redis_url: str) -> None:
    async def scenario(redis: Redis) -> list[int]:
        queue = _queue(window=2)
        counts = []
        await _submit(redis, queue, "a", _jobs("a", 20))
        counts.append(await redis.zcard(POOL.queue))  # no worker online: one worker's window
        counts.append(len((await fair.feed(redis, queue)).job_ids))
        for member in ("w-1", "w-2"):
            await heartbeats.beat(redis, POOL.value, member, INTERVAL)
        counts.append(len((await fair.feed(redis, queue)).job_ids))
        await heartbeats.beat(redis, POOL.value, "gateway-1", INTERVAL, standby=True)
        counts.append(len((await fair.feed(redis, queue)).job_ids))
        # A job deferred by arq (a retry's backoff) holds no place in the window.
        await redis.zadd(POOL.queue, {"a0": 10**13}, xx=True)
        counts.append(len((await fair.feed(redis, queue)).job_ids))
        counts.append(await redis.zcard(POOL.queue))
        return counts

    assert on_redis(redis_url, scenario) == [2, 0, 2, 2, 1, 7]


def test_a_job_takes_a_place_in_the_window_per_units_per_place_it_carries(
    redis_url: str,
) -> None:
    async def scenario(redis: Redis) -> list[Any]:
        queue = fair.FairQueue(POOL, 10, INTERVAL, units_per_place=10)
        big = [fair.Job(f"big{i}", CanaryPayload(), 50) for i in range(3)]
        small = [fair.Job(f"small{i}", CanaryPayload(), 10) for i in range(2)]
        fed = await _submit(redis, queue, "a", big)
        seen: list[Any] = [fed.job_ids if fed else None]
        seen.append((await _submit(redis, queue, "b", small)).job_ids)  # type: ignore[union-attr]
        await _finish(redis, ["big0"])
        seen.append((await fair.feed(redis, queue)).job_ids)
        await _finish(redis, ["small0"])
        seen.append(await fair.feed(redis, queue))
        await _finish(redis, ["big1"])
        seen.append((await fair.feed(redis, queue)).job_ids)
        places = keys.fair_places(POOL.value)
        seen.append(sorted(k.decode() for k in await redis.hkeys(places)))
        seen.append(await redis.ttl(places) > 0)
        return seen

    fed, b_fed, after_big0, after_small0, after_big1, places, expires = on_redis(
        redis_url, scenario
    )
    assert fed == ["big0", "big1"]  # 5 places each: the window of 10 is full
    assert b_fed == []
    # 5 places free: b's turn, then a's; a big job is fed while one place is free.
    assert after_big0 == ["small0", "big2"]
    assert after_small0.job_ids == [] and after_small0.waiting == 1  # 10 places taken still
    assert after_big1 == ["small1"]
    # Only jobs of more than one place are recorded (forgotten once arq no longer holds them
    # and the record has grown), and the record expires.
    assert places == ["big0", "big1", "big2"]
    assert expires


def test_a_job_already_queued_or_finished_is_not_fed_again(redis_url: str) -> None:
    async def scenario(redis: Redis) -> tuple[Any, ...]:
        queue = _queue(window=10)
        await _submit(redis, queue, "a", _jobs("x", 1))
        again = await _submit(redis, queue, "a", _jobs("x", 1))
        await redis.set(result_key_prefix + "y0", b"{}")
        finished = await _submit(redis, queue, "b", _jobs("y", 1))
        record = json.loads(await redis.get(job_key_prefix + "x0"))
        ttl = await redis.pttl(job_key_prefix + "x0")
        units = await redis.hget(keys.fair_queue(POOL.value), "units:a")
        return again, finished, record, ttl, await redis.zcard(POOL.queue), units

    again, finished, record, ttl, queued, units = on_redis(redis_url, scenario)
    assert again is not None and finished is not None
    assert (again.job_ids, again.waiting, finished.job_ids, finished.waiting) == ([], 0, [], 0)
    assert queued == 1 and units is None
    # The record a worker reads is arq's own, written with our JSON serializer.
    assert record["f"] == CANARY and record["k"] == {"payload": {"note": "x0"}}
    assert record["a"] == [] and record["t"] is None and record["et"] > 0 and ttl > 0


def test_the_token_budget_decides_what_is_fed_and_tenants_take_turns_at_it(
    redis_url: str,
) -> None:
    async def scenario(redis: Redis) -> tuple[fair.Fed | None, fair.Fed | None, fair.Fed]:
        budget = ratelimit.Bucket("bucket:portal", per_second=0.01, burst=2)
        queue = _queue(window=10, budget=budget)
        alpha = await _submit(redis, queue, "alpha", _jobs("a", 3))
        beta = await _submit(redis, queue, "beta", _jobs("b", 3))
        await redis.delete(budget.key)  # the bucket refilled: two tokens
        refilled = await fair.feed(redis, queue)
        return alpha, beta, refilled

    alpha, beta, refilled = on_redis(redis_url, scenario)
    assert alpha is not None and beta is not None
    assert alpha.job_ids == ["a0", "a1"] and alpha.token_wait > 0  # the burst, then none
    assert beta.job_ids == [] and 90 < beta.token_wait <= 100  # no token: nothing fed
    # The next tokens go round robin: beta first (it has had none), then alpha.
    assert refilled.job_ids == ["b0", "a2"] and refilled.waiting == 2
    assert refilled.token_wait > 0


def test_a_submission_over_the_quota_is_refused_whole(redis_url: str) -> None:
    async def scenario(redis: Redis) -> tuple[QuotaExceeded, TooLarge, list[Any], int]:
        queue = _queue(window=1)
        quota = fair.Quota(100, "orders", 9)
        await _submit(redis, queue, "a", _jobs("a", 3, units=20), quota)  # 1 fed, 40 waiting
        with pytest.raises(QuotaExceeded) as over:
            await _submit(redis, queue, "a", _jobs("more", 4, units=20), quota)
        with pytest.raises(TooLarge) as alone:
            await _submit(redis, queue, "c", _jobs("c", 1, units=101), quota)
        state = [
            await redis.llen(keys.fair_waiting(POOL.value, "a")),
            await redis.hget(keys.fair_queue(POOL.value), "units:a"),
            await redis.hget(keys.fair_queue(POOL.value), "jobs"),
        ]
        other = await _submit(redis, queue, "b", _jobs("b", 4, units=20), quota)
        assert other is not None
        return over.value, alone.value, state, other.waiting

    over, alone, state, waiting_with_b = on_redis(redis_url, scenario)
    assert over.code == "quota_exceeded" and over.retry_after == 9
    assert "40 orders" in over.message and "adds 80" in over.message and "100" in over.message
    assert alone.code == "over_quota"
    assert state == [2, b"40", b"2"]  # nothing of the refused submission went in
    assert waiting_with_b == 6  # another tenant's quota is its own


def test_the_record_jobs_belong_to_is_written_with_them_or_not_at_all(redis_url: str) -> None:
    """A ruptura session's hash and its jobs are one write: a session refused over quota leaves
    no record, and no record is written without its jobs (a process or a Redis failing
    between two writes left a session that never started, or jobs of a session unknown)."""

    def record(name: str) -> fair.Record:
        return fair.Record(
            f"test:record:{name}", {"total": 40, "at": 1.25}, 60, "test:records", name, 7.5
        )

    async def scenario(redis: Redis) -> tuple[list[Any], list[Any]]:
        queue = _queue(window=1)
        quota = fair.Quota(30, "orders", 9)
        await fair.submit(redis, queue, CANARY, _jobs("a", 2, units=15), "a", quota, record("a"))
        with pytest.raises(QuotaExceeded):
            await fair.submit(
                redis, queue, CANARY, _jobs("b", 1, units=20), "a", quota, record("b")
            )
        written = [
            await redis.hgetall("test:record:a"),
            0 < await redis.ttl("test:record:a") <= 60,
            await redis.zrange("test:records", 0, -1, withscores=True),
            await redis.llen(keys.fair_waiting(POOL.value, "a")),
        ]
        refused = [await redis.exists("test:record:b"), await redis.zscore("test:records", "b")]
        return written, refused

    written, refused = on_redis(redis_url, scenario)
    assert written == [{b"total": b"40", b"at": b"1.25"}, True, [(b"a", 7.5)], 1]
    assert refused == [0, None]


def test_a_tenant_whose_list_expired_is_forgotten(redis_url: str) -> None:
    async def scenario(redis: Redis) -> tuple[int, int, int]:
        queue = _queue(window=1)
        await _submit(redis, queue, "a", _jobs("a", 3))
        await _submit(redis, queue, "b", _jobs("b", 2))
        await redis.delete(keys.fair_waiting(POOL.value, "a"))
        fed = await fair.feed(redis, _queue(window=10))
        tenants = await redis.zcard(keys.fair_tenants(POOL.value))
        return len(fed.job_ids), fed.waiting, tenants

    assert on_redis(redis_url, scenario) == (2, 0, 0)  # b's jobs fed, a's lost ones not counted


def test_queue_stats_count_the_fair_queue_as_ready_and_age_it_from_submission(
    redis_url: str,
) -> None:
    """A backlog held in the fair queue ages from when it was submitted, not from when a job of
    it reached arq's queue: tenant a's jobs submitted 60 s ago still wait behind the window."""

    async def scenario(redis: Redis) -> tuple[tuple[int, float], tuple[int, float], float]:
        await _submit(redis, _queue(window=2), "a", _jobs("a", 5))
        fresh = await queue_stats(redis, POOL, INTERVAL)
        await redis.delete(POOL.queue)  # what was fed is gone (served); three still wait
        waiting = keys.fair_waiting(POOL.value, "a")
        for index, entry in enumerate(await redis.lrange(waiting, 0, -1)):
            aged = int(time.time() * 1000) - 60_000
            await redis.lset(waiting, index, re.sub(rb'"et":\d+}$', b'"et":%d}' % aged, entry))
        stale = await queue_stats(redis, POOL, INTERVAL)
        await redis.delete(waiting, keys.fair_tenants(POOL.value), keys.fair_queue(POOL.value))
        empty = await queue_stats(redis, POOL, INTERVAL)
        return (
            (fresh.ready, fresh.oldest_ready_age_seconds),
            (stale.ready, stale.oldest_ready_age_seconds),
            empty.oldest_ready_age_seconds,
        )

    (fresh_ready, fresh_age), (stale_ready, stale_age), empty_age = on_redis(redis_url, scenario)
    assert fresh_ready == 5 and 0 <= fresh_age < 30
    assert stale_ready == 3 and 59 <= stale_age < 90
    assert empty_age == 0.0
