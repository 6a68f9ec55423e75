"""The session store on a real redis-server: idempotent batch writes, offsets, events."""

import asyncio
import functools
import json
from datetime import date

import pytest
from sqlalchemy.exc import OperationalError

from esteira_cli.processes import free_port
from esteira_core import keys
from esteira_core.db import create_db_engine
from esteira_core.errors import NotFound
from esteira_core.jobs import RUPTURA_BATCHES_PER_BIG_JOB, RUPTURA_BATCHES_PER_JOB, RupturaMode
from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings
from esteira_ruptura import data, judged, sessions, use_cases
from esteira_ruptura.demo import DemoSpec, seed_demo
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionCache
from esteira_ruptura.sources import esteira_tables
from esteira_testing.ruptura import REFERENCE, record_session

pytestmark = pytest.mark.integration
SID = "0123456789abcdef0123456789abcdef"


async def _create(redis, total: int) -> None:
    await record_session(redis, SID, total=total, batches=2)


def test_a_batch_is_written_once_however_often_it_is_delivered(redis_url: str) -> None:
    async def scenario():
        redis = create_redis(CoreSettings(redis_url=redis_url))
        await _create(redis, total=3)
        pubsub = redis.pubsub()
        await pubsub.subscribe(f"esteira:ruptura:session:{SID}:events")
        first = await sessions.record_batch(redis, SID, 0, [b'{"n": 1}', b'{"n": 2}'])
        again = await sessions.record_batch(redis, SID, 0, [b'{"n": 1}', b'{"n": 2}'])
        pending_before = await sessions.prepare_job(redis, SID, [0, 1])
        last = await sessions.record_batch(redis, SID, 1, [b'{"n": 3}'])
        pending_after = await sessions.prepare_job(redis, SID, [0, 1])
        page = await sessions.results_since(redis, SID, "t", 1, 100)
        limited = (await sessions.results_since(redis, SID, "t", 0, 1)).results
        info, tail = page.info, page.results
        events = []
        while len(events) < 2:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
            if message:
                events.append(json.loads(message["data"]))
        await pubsub.aclose()
        await redis.aclose()
        return first, again, pending_before, last, pending_after, info, tail, limited, events

    first, again, pending_before, last, pending_after, info, tail, limited, events = asyncio.run(
        scenario()
    )
    assert (first, again, last) == (2, sessions.DUPLICATE_BATCH, 3)
    assert (pending_before, pending_after) == (([1], None), ([], None))
    assert info.done and info.status == "done" and info.percent == 100.0
    assert [json.loads(item) for item in tail] == [{"n": 2}, {"n": 3}]
    assert limited == [b'{"n": 1}']
    assert events == [
        {"batch": 0, "processed": 2, "total": 3, "done": False},
        {"batch": 1, "processed": 3, "total": 3, "done": True},
    ]


def test_a_job_finds_its_batches_pending_and_pins_the_judged_carteira_its_version_names(
    redis_url: str,
) -> None:
    async def scenario():
        redis = create_redis(CoreSettings(redis_url=redis_url))
        await _create(redis, total=40)
        await sessions.record_batch(redis, SID, 1, [b"{}"] * 20)
        alone = await sessions.prepare_job(redis, SID, [0, 1], "pointer:v1")  # nothing named
        await redis.set("pointer:v1", "j1")
        named = await sessions.prepare_job(redis, SID, [0, 1], "pointer:v1")
        await redis.set("pointer:v2", "j2")  # a later job, another version: the pin holds
        later = await sessions.prepare_job(redis, SID, [0, 1], "pointer:v2")
        without = await sessions.prepare_job(redis, SID, [0, 1])
        gone = await sessions.prepare_job(redis, "f" * 32, [0], "pointer:v1")
        await redis.aclose()
        return alone, named, later, without, gone

    alone, named, later, without, gone = asyncio.run(scenario())
    assert alone == ([0], None)
    assert named == later == without == ([0], "j1")
    assert gone is None


def test_nothing_is_written_for_a_deleted_session(redis_url: str) -> None:
    async def scenario():
        redis = create_redis(CoreSettings(redis_url=redis_url))
        await _create(redis, total=1)
        await sessions.delete(redis, SID, "t")
        written = await sessions.record_batch(redis, SID, 0, [b'{"n": 1}'])
        leftovers = await redis.exists(f"esteira:ruptura:session:{SID}:results")
        found = await sessions.info(redis, SID)
        await redis.aclose()
        return written, leftovers, found

    assert asyncio.run(scenario()) == (sessions.SESSION_GONE, 0, None)


def test_another_tenants_session_does_not_exist_to_this_one(redis_url: str) -> None:
    async def scenario():
        redis = create_redis(CoreSettings(redis_url=redis_url))
        await _create(redis, total=1)
        refusals = []
        for attempt in (
            sessions.owned(redis, SID, "other"),
            sessions.results_since(redis, SID, "other", 0, 10),
            sessions.delete(redis, SID, "other"),
        ):
            with pytest.raises(NotFound) as refused:
                await attempt
            refusals.append(refused.value.code)
        still_there = await sessions.owned(redis, SID, "t")
        await redis.aclose()
        return refusals, still_there.total

    assert asyncio.run(scenario()) == (["session_not_found"] * 3, 1)


def test_a_small_session_is_planned_in_one_job_of_batches_of_twenty() -> None:
    horizon = Horizon(date(2026, 3, 2), 28, 7)
    jobs = use_cases.plan(SID, [str(i) for i in range(45)], RupturaMode.INDEPENDENT, horizon)
    assert len(jobs) == 1
    assert [(index, len(orders)) for index, orders in jobs[0].batches()] == [
        (0, 20),
        (1, 20),
        (2, 5),
    ]
    assert {(j.session_orders, j.reference_date, j.mode) for j in jobs} == {
        (45, horizon.start, RupturaMode.INDEPENDENT)
    }


def test_a_small_sessions_one_job_writes_and_announces_each_batch_on_its_own(
    redis_url: str, migrated_engine
) -> None:
    seed_demo(migrated_engine, DemoSpec(orders=60, products=20, reference_date=REFERENCE))
    source = esteira_tables(migrated_engine)
    with source.reading() as carteira:
        wanted = data.active_order_numbers(carteira)[:45]
    (job,) = use_cases.plan(SID, wanted, RupturaMode.INDEPENDENT, Horizon(REFERENCE, 28, 7))

    async def scenario():
        redis = create_redis(CoreSettings(redis_url=redis_url))
        await record_session(redis, SID, total=45, batches=3)
        pubsub = redis.pubsub()
        await pubsub.subscribe(f"esteira:ruptura:session:{SID}:events")
        run = functools.partial(
            use_cases.analyse_batch, redis, source, SessionCache(), judged.Judges(), job
        )
        stored, again = await run(), await run()  # the second: a job delivered twice
        events = []
        while len(events) < 3:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
            if message:
                events.append(json.loads(message["data"]))
        page = await sessions.results_since(redis, SID, "t", 0, 100)
        await pubsub.aclose()
        await redis.aclose()
        return stored, again, events, [json.loads(r)["num_pedido"] for r in page.results]

    stored, again, events, numbers = asyncio.run(scenario())
    assert (stored, again) == (45, 0)
    assert [(e["batch"], e["processed"], e["done"]) for e in events] == [
        (0, 20, False),
        (1, 40, False),
        (2, 45, True),
    ]
    assert numbers == wanted


def test_a_session_reading_a_pinned_judged_carteira_is_written_while_the_database_is_away(
    redis_url: str,
) -> None:
    """Its reports are in Redis: the job needs no database. A session with no judged carteira
    pinned needs one, and its job fails (to be tried again), writing nothing."""
    away = esteira_tables(
        create_db_engine(f"postgresql+psycopg://esteira@127.0.0.1:{free_port()}/x")
    )
    horizon = Horizon(REFERENCE, 28, 7)
    (pinned_job,) = use_cases.plan(SID, ["1", "2"], RupturaMode.INDEPENDENT, horizon)
    (other_job,) = use_cases.plan("e" * 32, ["1", "2"], RupturaMode.INDEPENDENT, horizon)

    async def scenario():
        redis = create_redis(CoreSettings(redis_url=redis_url))
        await record_session(redis, SID, total=2, batches=1)
        await record_session(redis, "e" * 32, total=2, batches=1)
        await redis.hset(keys.ruptura_judged_state("j1"), "complete", 1)
        await redis.hset(keys.ruptura_judged_reports("j1"), mapping={"1": b"{}", "2": b"{}"})
        await redis.hset(keys.ruptura_session(SID), "judged", "j1")
        run = functools.partial(
            use_cases.analyse_batch, redis, away, SessionCache(), judged.Judges()
        )
        stored = await run(pinned_job)
        with pytest.raises(OperationalError):
            await run(other_job)
        unwritten = await redis.llen(keys.ruptura_session_results("e" * 32))
        await redis.aclose()
        return stored, unwritten

    assert asyncio.run(scenario()) == (2, 0)


def test_a_session_that_copies_judged_reports_is_planned_in_fewer_jobs_of_batches() -> None:
    horizon = Horizon(date(2026, 3, 2), 28, 7)
    wanted = [str(i) for i in range(1, 1046)]  # a big session: 53 batches
    jobs = use_cases.plan(SID, wanted, RupturaMode.INDEPENDENT, horizon)
    per_job = RUPTURA_BATCHES_PER_BIG_JOB
    assert [j.batch_index for j in jobs] == list(range(0, 53, per_job))
    assert [len(j.batches()) for j in jobs] == [per_job] * (53 // per_job) + [53 % per_job]
    batches = [batch for job in jobs for batch in job.batches()]
    assert [index for index, _ in batches] == list(range(53))
    assert [number for _, orders in batches for number in orders] == wanted
    assert all(len(orders) <= 20 for _, orders in batches)
    allocated = use_cases.plan(SID, wanted[:45], RupturaMode.ALLOCATED, horizon)
    assert [len(j.batches()) for j in allocated] == [3]  # allocated: always judged whole
    # A small session's batches judge their own orders: its jobs stay small.
    small = use_cases.plan(SID, wanted[:999], RupturaMode.INDEPENDENT, horizon)
    assert [len(j.batches()) for j in small] == [RUPTURA_BATCHES_PER_JOB] * 10


def test_a_finished_job_of_a_big_session_with_batches_not_written_is_found(
    redis_url: str,
) -> None:
    """What a failover can leave: arq's result of a big session's job (its second, of
    RUPTURA_BATCHES_PER_BIG_JOB batches) with only its first RUPTURA_BATCHES_PER_JOB batches
    written; it is found by the batches its session's jobs carry, not a small session's."""
    per_job = RUPTURA_BATCHES_PER_BIG_JOB

    async def scenario():
        redis = create_redis(CoreSettings(redis_url=redis_url))
        batches = 3 * per_job
        await record_session(
            redis, SID, total=batches * 20, batches=batches, batches_per_job=per_job
        )
        for index in [*range(per_job), *range(per_job, per_job + RUPTURA_BATCHES_PER_JOB)]:
            await sessions.record_batch(redis, SID, index, [b"{}"] * 20)
        for first in (0, per_job):  # both jobs finished; the third still queued
            await redis.set(f"arq:result:ruptura-{SID}-{first}", b"finished", ex=60)
        found = await sessions.lost_jobs(redis, "ruptura-", "arq:job:", "arq:result:")
        await redis.aclose()
        return found

    assert asyncio.run(scenario()) == [f"ruptura-{SID}-{per_job}"]


def test_a_lost_job_is_found_behind_a_page_of_finished_sessions(redis_url: str) -> None:
    """The open sessions are looked at a page at a time, oldest first; a page of sessions that
    all finished meanwhile leaves the set, and the look goes on to the next page."""

    async def scenario():
        redis = create_redis(CoreSettings(redis_url=redis_url))
        for n in range(sessions.LOST_JOBS_PER_CALL):  # older, finished
            finished = f"{n:032x}"
            await record_session(redis, finished, total=20, batches=1)
            await sessions.record_batch(redis, finished, 0, [b"{}"] * 20)
        await record_session(redis, SID, total=40, batches=2)
        await redis.set(f"arq:result:ruptura-{SID}-0", b"finished", ex=60)
        found = await sessions.lost_jobs(redis, "ruptura-", "arq:job:", "arq:result:")
        still_open = await redis.zcard("esteira:ruptura:sessions:open")
        await redis.aclose()
        return found, still_open

    assert asyncio.run(scenario()) == ([f"ruptura-{SID}-0"], 1)
