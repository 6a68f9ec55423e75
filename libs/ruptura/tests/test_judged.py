"""The carteira judged once for every worker (judged.py), on a real redis-server and a real
database (SQLite and PostgreSQL): two processes' judges asking at once share one judgement,
its reports are the ones a process computes itself, and a judge that dies leaves its batches
free to claim a new one."""

import asyncio
import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from esteira_core import keys, metrics
from esteira_core.jobs import RupturaMode
from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings
from esteira_ruptura import data, judged, sessions, use_cases
from esteira_ruptura.analysis import not_found
from esteira_ruptura.demo import DemoSpec, seed_demo
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionAnalysis, SessionCache
from esteira_ruptura.sources import CarteiraSource, esteira_tables
from esteira_testing.components import RedisSentinelCluster
from esteira_testing.ruptura import record_session

pytestmark = pytest.mark.integration
REFERENCE = date(2026, 3, 2)
HORIZON = Horizon(REFERENCE)


@pytest.fixture
def carteira(migrated_engine: Engine) -> CarteiraSource:
    seed_demo(migrated_engine, DemoSpec(orders=300, products=40, seed=3, reference_date=REFERENCE))
    return esteira_tables(migrated_engine)


# sha256 of the reports the judge renders for the seeded carteira below (each order's number, a
# NUL, its JSON and a newline, in the order rendered), as they were when each report was built
# as a dict and encoded by orjson: rendering them otherwise must not change one byte.
RENDERED_SHA256 = {
    RupturaMode.INDEPENDENT: "71554d8c39950b71bd850ee74a293aa32a488d0f8566369bdfb55fd49147db4f",
    RupturaMode.ALLOCATED: "22d78563223f1bf6ae133daa4bb9bc4f498344952afd98825039b0f8e16c6a6d",
}


def _orders(source: CarteiraSource) -> list[str]:
    with source.reading() as reading:
        return data.active_order_numbers(reading)


def _judgements(mode: RupturaMode) -> float:
    return metrics.CARTEIRA_JUDGEMENTS.labels(mode.value)._value.get()


@pytest.mark.parametrize("mode", list(RupturaMode))
def test_two_processes_asking_at_once_share_one_judgement_of_the_right_reports(
    carteira: CarteiraSource,
    redis_url: str,
    mode: RupturaMode,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(judged, "ROWS_PER_CHUNK", 300)  # many chunks, each ending an order
    monkeypatch.setattr(judged, "ORDERS_PER_CHUNK", 40)
    orders = _orders(carteira)
    expected = SessionAnalysis(carteira, HORIZON, mode, whole_carteira=True).analyse(orders)
    version = carteira.version()
    before = _judgements(mode)

    async def scenario() -> tuple[set[str], dict[bytes, bytes], dict[bytes, bytes]]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        first, second = judged.Judges(), judged.Judges()
        try:
            ids = await asyncio.gather(
                *(j.claim(redis, carteira, HORIZON, mode, version) for j in (first, second) * 3)
            )
            await asyncio.gather(*first._tasks, *second._tasks)
            (judged_id,) = set(ids)
            reports = await redis.hgetall(keys.ruptura_judged_reports(judged_id))
            state = await redis.hgetall(keys.ruptura_judged_state(judged_id))
            return set(ids), reports, state
        finally:
            await redis.aclose()

    ids, reports, state = asyncio.run(scenario())
    assert len(ids) == 1 and _judgements(mode) == before + 1  # judged once, for both
    assert state[b"complete"] == b"1" and state[b"judged_version"] == version.encode()
    assert {number.decode(): orjson.loads(report) for number, report in reports.items()} == {
        result["num_pedido"]: result for result in expected
    }


@pytest.mark.parametrize("mode", list(RupturaMode))
def test_the_rendered_reports_are_byte_for_byte_the_ones_judged_before(
    carteira: CarteiraSource, mode: RupturaMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(judged, "ROWS_PER_CHUNK", 300)
    monkeypatch.setattr(judged, "ORDERS_PER_CHUNK", 40)
    digest, orders = hashlib.sha256(), 0
    with carteira.reading() as reading:
        for chunk in judged.rendered_reports(reading, HORIZON, mode):
            for number, report in chunk.items():
                digest.update(number.encode() + b"\0" + report + b"\n")
                orders += 1
    assert orders == len(_orders(carteira))
    assert digest.hexdigest() == RENDERED_SHA256[mode]


def test_a_batch_copies_its_reports_and_records_unknown_orders_as_not_found(
    carteira: CarteiraSource, redis_url: str
) -> None:
    orders = _orders(carteira)[:3] + ["NAO-EXISTE"]
    expected = SessionAnalysis(carteira, HORIZON, RupturaMode.INDEPENDENT).analyse(orders)

    async def scenario() -> tuple[int, int, list[bytes]]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        try:
            session_id = uuid.uuid4().hex
            await record_session(redis, session_id, total=len(orders), batches=1)
            judges = judged.Judges()
            judged_id = await judges.claim(
                redis, carteira, HORIZON, RupturaMode.INDEPENDENT, carteira.version()
            )
            await asyncio.gather(*judges._tasks)
            documents = [(number, not_found(number)) for number in orders]
            first = await sessions.copy_batches(redis, session_id, judged_id, [(0, documents)])
            again = await sessions.copy_batches(redis, session_id, judged_id, [(0, documents)])
            page = await sessions.results_since(redis, session_id, "t", 0, 10)
            return first, again, page.results
        finally:
            await redis.aclose()

    first, again, results = asyncio.run(scenario())
    assert (first, again) == ([len(orders)], [sessions.DUPLICATE_BATCH])
    assert [orjson.loads(raw) for raw in results] == expected
    assert expected[-1]["status"] == "nao_encontrado"


def test_a_jobs_batches_are_copied_in_one_call_each_announced_up_to_one_not_judged_yet(
    redis_url: str,
) -> None:
    """A judgement under way (its state there, not complete) has written the reports of
    orders a and c, not b's: of three batches, the first is written and announced, the copy
    stops at the second, and the third waits with it."""

    async def scenario() -> tuple[list[int], list[int], list[int], list[bytes], list[Any]]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        try:
            session_id, judged_id = uuid.uuid4().hex, uuid.uuid4().hex
            await record_session(redis, session_id, total=3, batches=3)
            await redis.hset(keys.ruptura_judged_state(judged_id), "version", "1")
            reports = keys.ruptura_judged_reports(judged_id)
            await redis.hset(reports, mapping={"a": b'"A"', "c": b'"C"'})
            pubsub = redis.pubsub()
            await pubsub.subscribe(keys.ruptura_session_events(session_id))
            batches = [(i, [(n, not_found(n))]) for i, n in enumerate("abc")]
            stopped = await sessions.copy_batches(redis, session_id, judged_id, batches)
            await redis.hset(reports, "b", b'"B"')
            rest = await sessions.copy_batches(redis, session_id, judged_id, batches[1:])
            again = await sessions.copy_batches(redis, session_id, judged_id, batches)
            page = await sessions.results_since(redis, session_id, "t", 0, 10)
            events: list[Any] = []
            while len(events) < 3:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
                if message:
                    events.append(orjson.loads(message["data"]))
            await pubsub.aclose()
            return stopped, rest, again, page.results, events
        finally:
            await redis.aclose()

    stopped, rest, again, results, events = asyncio.run(scenario())
    assert stopped == [1, sessions.NOT_JUDGED_YET]
    assert rest == [2, 3]
    assert again == [sessions.DUPLICATE_BATCH] * 3
    assert results == [b'"A"', b'"B"', b'"C"']
    assert [(e["batch"], e["processed"], e["done"]) for e in events] == [
        (0, 1, False),
        (1, 2, False),
        (2, 3, True),
    ]


def test_a_draining_worker_stops_a_job_between_two_copies(
    carteira: CarteiraSource, redis_url: str
) -> None:
    """A judgement under way has written the reports of the job's first batch only: the job
    copies that batch, and a process that drains hands the rest back (Stopped at the second)
    instead of waiting for the judge."""
    mode = RupturaMode.INDEPENDENT
    session_id, judged_id = uuid.uuid4().hex, uuid.uuid4().hex
    orders = _orders(carteira)[:40]
    (job,) = use_cases.plan(session_id, orders, mode, HORIZON)

    async def scenario() -> tuple[int, int]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        try:
            await record_session(redis, session_id, total=40, batches=2)
            await redis.hset(keys.ruptura_judged_state(judged_id), "version", "1")
            reports = dict.fromkeys(orders[:20], b"{}")
            await redis.hset(keys.ruptura_judged_reports(judged_id), mapping=reports)
            await redis.set(judged.pointer(HORIZON, mode, carteira.version()), judged_id)
            draining = use_cases.analyse_batch(
                redis, carteira, SessionCache(), judged.Judges(), job, stopping=lambda: True
            )
            with pytest.raises(use_cases.Stopped) as stopped:
                await asyncio.wait_for(draining, 10)
            written = await redis.llen(keys.ruptura_session_results(session_id))
            return stopped.value.batch_index, written
        finally:
            await redis.aclose()

    assert asyncio.run(scenario()) == (1, 20)


def test_a_judge_that_dies_leaves_its_batches_free_to_claim_a_new_one(
    carteira: CarteiraSource, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(judged, "LEASE_SECONDS", 0.3)
    monkeypatch.setattr(judged, "RENEW_SECONDS", 0.05)  # the judge alive renews it in time
    mode, version = RupturaMode.INDEPENDENT, carteira.version()

    async def scenario() -> tuple[int, int, int, str | None, bool, int]:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        try:
            session_id = uuid.uuid4().hex
            await record_session(redis, session_id, total=2, batches=2, mode=mode)
            first, second = _orders(carteira)[:2]
            dying = judged.Judges()
            dead_id = await dying.claim(redis, carteira, HORIZON, mode, version)
            for task in dying._tasks:  # it dies having written one report: it renews nothing
                task.cancel()
            await redis.hset(keys.ruptura_judged_reports(dead_id), second, b'{"n": 2}')

            async def copy(index: int, number: str, judged_id: str) -> int:
                documents = [(number, not_found(number))]
                (code,) = await sessions.copy_batches(
                    redis, session_id, judged_id, [(index, documents)]
                )
                return code

            waiting = await copy(0, first, dead_id)
            written = await copy(1, second, dead_id)  # what it wrote is copied at once
            await asyncio.sleep(0.5)
            gone = await copy(0, first, dead_id)
            found = await judged.find(redis, HORIZON, mode, version)
            # The new judge gets a lease of the usual length: on a busy machine a 0.3 s one can
            # run out between two renewals, and this judgement is not about dying.
            monkeypatch.setattr(judged, "LEASE_SECONDS", 3.0)
            monkeypatch.setattr(judged, "RENEW_SECONDS", 0.5)
            judges = judged.Judges()
            new_id = await judges.claim(redis, carteira, HORIZON, mode, version)
            await asyncio.gather(*judges._tasks)
            copied = await copy(0, first, new_id)
            return waiting, written, gone, found, new_id != dead_id, copied
        finally:
            await redis.aclose()

    waiting, written, gone, found, renewed, copied = asyncio.run(scenario())
    assert waiting == sessions.NOT_JUDGED_YET  # still within its lease: its batch waits
    assert written == 1
    assert gone == sessions.JUDGED_GONE and found is None  # the lease ran out all the same
    assert renewed and copied == 2


def test_reports_a_failover_lost_are_judged_again_not_taken_for_orders_not_found(
    carteira: CarteiraSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk of reports acknowledged by a primary that dies before its replica has it is lost
    at the promotion, while the judge, riding the failover out, writes the next chunks to the
    promoted replica. Finished so, the judgement would answer its lost orders as not found; it
    is given up instead, and the next batch that needs it claims a new one."""
    monkeypatch.setattr(judged, "ROWS_PER_CHUNK", 300)
    monkeypatch.setattr(judged, "LEASE_SECONDS", 30.0)  # the lease outlives the failover
    judge = judged.rendered_reports

    def slowly(*args: Any) -> Iterator[dict[str, bytes]]:
        for chunk in judge(*args):
            time.sleep(0.2)  # time to lose a chunk between two
            yield chunk

    monkeypatch.setattr(judged, "rendered_reports", slowly)
    mode, version = RupturaMode.INDEPENDENT, carteira.version()
    cluster = RedisSentinelCluster(relay=True).start()

    async def scenario() -> tuple[int, bytes | None, str | None]:
        settings = CoreSettings(
            redis_url="redis://127.0.0.1:1/0",  # nothing there: the Sentinels name the primary
            redis_sentinels=cluster.sentinels,
            redis_master_name=cluster.MASTER_NAME,
        )
        redis = create_redis(settings, ride_out=True)
        try:
            judges = judged.Judges()
            judged_id = await judges.claim(redis, carteira, HORIZON, mode, version)
            reports = keys.ruptura_judged_reports(judged_id)
            while not (written := await redis.hlen(reports)):
                await asyncio.sleep(0.01)
            cluster.hold_replication()
            while await redis.hlen(reports) == written:  # a chunk the replica never gets
                await asyncio.sleep(0.01)
            dead = cluster.kill_primary()
            await asyncio.to_thread(cluster.wait_for_promotion, dead.port)
            await asyncio.gather(*judges._tasks)
            state = keys.ruptura_judged_state(judged_id)
            return (
                await redis.hlen(reports),
                await redis.hget(state, "complete"),
                await judged.find(redis, HORIZON, mode, version),
            )
        finally:
            await redis.aclose()

    try:
        kept, complete, found = asyncio.run(scenario())
    finally:
        cluster.close()
    assert kept < len(_orders(carteira))  # reports were lost
    assert complete is None and found is None  # given up, not finished with holes


def test_streamed_lines_come_in_whole_orders_and_are_every_line(carteira: CarteiraSource) -> None:
    with carteira.reading() as reading:
        everything = [tuple(line) for line in data.load_lines(reading, None)]
    with carteira.reading() as reading:
        chunks = [[tuple(line) for line in chunk] for chunk in data.stream_lines(reading, 50)]
    assert [line for chunk in chunks for line in chunk] == everything
    assert len(chunks) > 10
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before[-1][0] != after[0][0]  # no order is split between two chunks


def test_a_stream_left_early_ends_its_read_ahead_and_frees_its_connection(
    carteira: CarteiraSource,
) -> None:
    with carteira.reading() as reading:
        chunks = data.stream_lines(reading, 50)
        first = next(chunks)
        chunks.close()
        assert first and data.active_order_numbers(reading)  # the connection answers again
    assert not [t for t in threading.enumerate() if t.name == "carteira-read-ahead"]


def test_rows_read_ahead_come_in_order_and_a_failed_read_is_raised_to_the_reader() -> None:
    answers = iter([[1], [2, 3], [4], []])
    assert list(data._fetched(lambda: next(answers), ahead=True)) == [[1], [2, 3], [4]]

    def lost() -> list[int]:
        raise ConnectionError("the database went away")

    with pytest.raises(ConnectionError, match="went away"):
        list(data._fetched(lost, ahead=True))
    assert not [t for t in threading.enumerate() if t.name == "carteira-read-ahead"]
