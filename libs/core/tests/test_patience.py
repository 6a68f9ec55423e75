"""Waiting for a database that may hang (esteira_core.db.patience): a read that hangs costs
its caller the bound, not the hang; callers after it are answered at once until one probe's
read answers; a read that never got a thread says nothing of the database."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine

from esteira_core.db import DatabaseNotAnswering, create_db_engine
from esteira_core.db.patience import Patience, patience_of, read_in_thread
from esteira_testing.clock import ManualClock


def test_a_hung_read_costs_the_bound_then_callers_fail_at_once_until_a_probe_answers() -> None:
    hang, probing = threading.Event(), threading.Event()
    reads: list[str] = []

    def read(name: str) -> str:
        reads.append(name)
        if name == "hangs":
            hang.wait(10)
        if name == "probe":
            probing.wait(10)
        return name

    async def scenario() -> list[BaseException | str]:
        clock = ManualClock()
        patience = Patience(0.2, clock)

        def asking(name: str) -> asyncio.Future[str]:
            return asyncio.ensure_future(patience.run(lambda: asyncio.to_thread(read, name)))

        answers = await asyncio.gather(asking("hangs"), return_exceptions=True)
        answers += await asyncio.gather(asking("refused"), return_exceptions=True)
        clock.now = 1.0  # the circuit's window has passed: the next caller probes
        patience.seconds = 5  # and is waited for as long as a slow machine may need
        probe = asking("probe")
        while "probe" not in reads:
            await asyncio.sleep(0.001)
        answers += await asyncio.gather(asking("during the probe"), return_exceptions=True)
        probing.set()
        answers += await asyncio.gather(probe, return_exceptions=True)
        answers += await asyncio.gather(asking("after"), return_exceptions=True)
        hang.set()
        return answers

    hung, refused, during, probe, after = asyncio.run(scenario())
    assert isinstance(hung, DatabaseNotAnswering) and "no answer" in str(hung)
    assert isinstance(refused, DatabaseNotAnswering) and isinstance(during, DatabaseNotAnswering)
    assert (probe, after) == ("probe", "after")
    assert reads == ["hangs", "probe", "after"]  # no read while the circuit was open


def test_a_read_that_got_no_thread_fails_its_caller_but_not_the_next() -> None:
    """The process is busy (every thread of its executor taken), not the database: the next
    caller is not refused."""
    engine = create_engine("sqlite://")
    release = threading.Event()

    async def scenario() -> tuple[BaseException | str, str]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1))
        patience_of(engine).seconds = 0.2
        busy = asyncio.ensure_future(asyncio.to_thread(release.wait, 10))
        (queued,) = await asyncio.gather(
            read_in_thread(engine, lambda: "queued"), return_exceptions=True
        )
        release.set()
        await busy
        patience_of(engine).seconds = 5  # as long as a slow machine may need
        return queued, await read_in_thread(engine, lambda: "next")

    queued, following = asyncio.run(scenario())
    assert isinstance(queued, DatabaseNotAnswering) and "no thread free" in str(queued)
    assert following == "next"


def test_a_read_that_fails_on_its_own_is_an_answer() -> None:
    async def scenario() -> str:
        patience = Patience(0.2, ManualClock())

        def refused() -> str:
            raise ConnectionRefusedError("refused")

        with pytest.raises(ConnectionRefusedError):
            await patience.run(lambda: asyncio.to_thread(refused))
        return await patience.run(lambda: asyncio.to_thread(lambda: "answered"))

    assert asyncio.run(scenario()) == "answered"


def test_each_engine_waits_for_longer_than_its_lock_timeout() -> None:
    engine, other = create_engine("sqlite://"), create_engine("sqlite://")
    assert patience_of(engine) is patience_of(engine)
    assert patience_of(engine) is not patience_of(other)
    assert patience_of(engine).seconds == 5.0
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    assert patience_of(create_db_engine(url, lock_timeout_seconds=2)).seconds == 5.0
    assert patience_of(create_db_engine(url, lock_timeout_seconds=30)).seconds == 31.0
    assert asyncio.run(read_in_thread(engine, lambda a, b: a + b, 1, b=2)) == 3


def test_a_read_let_through_before_the_circuit_opened_does_not_close_it() -> None:
    """Only the probe's answer closes the circuit: a read begun before it opened may end long
    after, and says nothing of the database now."""
    slow, hang = threading.Event(), threading.Event()

    async def scenario() -> list[BaseException | str]:
        clock = ManualClock()
        patience = Patience(5, clock)
        early = asyncio.ensure_future(patience.run(lambda: asyncio.to_thread(slow.wait, 10)))
        await asyncio.sleep(0.05)
        patience.seconds = 0.2
        answers = await asyncio.gather(
            patience.run(lambda: asyncio.to_thread(hang.wait, 10)), return_exceptions=True
        )  # the circuit opens
        slow.set()
        await early  # answers, after the circuit opened
        answers += await asyncio.gather(
            patience.run(lambda: asyncio.to_thread(lambda: "refused")), return_exceptions=True
        )
        hang.set()
        return answers

    hung, after = asyncio.run(scenario())
    assert isinstance(hung, DatabaseNotAnswering) and isinstance(after, DatabaseNotAnswering)
