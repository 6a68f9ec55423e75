"""A source's version read once for whoever asks while a read is under way (SharedReads): every
caller gets a read begun after it asked, never one begun before. And a session's version read
once in a process, whichever of its jobs ask (SessionAnalysis.version)."""

import asyncio
import threading
from datetime import date

import pytest

from esteira_core.db import DatabaseNotAnswering
from esteira_core.db.patience import Patience
from esteira_core.jobs import RupturaMode
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionAnalysis
from esteira_ruptura.sources import SharedReads
from esteira_testing.clock import ManualClock


class Reads:
    """A read that counts itself and holds until let go."""

    def __init__(self) -> None:
        self.made = 0
        self.go = threading.Event()
        self.fail = False

    def __call__(self) -> str:
        self.made += 1
        made = self.made
        self.go.wait(10)
        if self.fail:
            raise ConnectionError("the database went away")
        return f"v{made}"


async def _under_way(reads: Reads, made: int) -> None:
    while reads.made < made:
        await asyncio.sleep(0.001)


def test_callers_asking_together_share_one_read() -> None:
    async def scenario() -> tuple[list[str], int]:
        reads = Reads()
        shared = SharedReads(reads, Patience())
        callers = [asyncio.ensure_future(shared()) for _ in range(10)]
        await _under_way(reads, 1)
        reads.go.set()
        return await asyncio.gather(*callers), reads.made

    answers, made = asyncio.run(scenario())
    assert answers == ["v1"] * 10 and made == 1


def test_a_caller_asking_during_a_read_gets_the_next_one() -> None:
    async def scenario() -> tuple[str, list[str], str, int]:
        reads = Reads()
        shared = SharedReads(reads, Patience())
        first = asyncio.ensure_future(shared())
        await _under_way(reads, 1)  # read 1 has begun: it may miss what changed since
        during = [asyncio.ensure_future(shared()) for _ in range(5)]
        reads.go.set()
        answers = await asyncio.gather(first, *during)
        after = await shared()  # nothing under way: a read of its own
        return answers[0], answers[1:], after, reads.made

    first, during, after, made = asyncio.run(scenario())
    assert first == "v1"
    assert during == ["v2"] * 5
    assert (after, made) == ("v3", 3)


def test_a_failed_read_fails_its_callers_and_the_next_call_reads_again() -> None:
    async def scenario() -> tuple[list[BaseException | str], str]:
        reads = Reads()
        shared = SharedReads(reads, Patience())
        reads.fail = True
        reads.go.set()
        failed = await asyncio.gather(shared(), shared(), return_exceptions=True)
        reads.fail = False
        return failed, await shared()

    failed, again = asyncio.run(scenario())
    assert all(isinstance(answer, ConnectionError) for answer in failed)
    assert again == "v2"


def test_a_caller_that_leaves_takes_nothing_from_the_others() -> None:
    async def scenario() -> list[str]:
        reads = Reads()
        shared = SharedReads(reads, Patience())
        leaving, staying = asyncio.ensure_future(shared()), asyncio.ensure_future(shared())
        await _under_way(reads, 1)
        leaving.cancel()
        reads.go.set()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        return [await staying]

    assert asyncio.run(scenario()) == ["v1"]


def test_a_read_that_hangs_fails_its_callers_in_time_and_later_callers_read_anew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first read hangs (a server paused, a connection lost mid-query): its caller, and
    whoever waited for the read after it, get DatabaseNotAnswering once the Patience has run
    out, not when the read ends; whoever asks while its circuit is open gets it at once,
    without a read; whoever asks later gets a new read, the hung one left to itself."""
    monkeypatch.setattr(SharedReads, "HANGING_SECONDS", 0.2)
    hung = threading.Event()
    made: list[int] = []
    clock = ManualClock()  # the circuit's

    def read() -> str:
        made.append(len(made) + 1)
        number = len(made)
        if number == 1:
            hung.wait(10)
        return f"v{number}"

    async def scenario() -> tuple[list[BaseException | str], str, int]:
        patience = Patience(0.2, clock)
        shared = SharedReads(read, patience)
        first = asyncio.ensure_future(shared())
        while not made:
            await asyncio.sleep(0.001)
        waiting = asyncio.ensure_future(shared())  # read 1 has begun: the next one, then
        failed = await asyncio.wait_for(asyncio.gather(first, waiting, return_exceptions=True), 5)
        failed += await asyncio.gather(shared(), return_exceptions=True)  # the circuit is open
        clock.now += 1  # it lets a probe through
        patience.seconds = 5  # waited for as long as a slow machine may need
        late = await asyncio.wait_for(shared(), 5)
        hung.set()
        return failed, late, len(made)

    failed, late, made_count = asyncio.run(scenario())
    assert len(failed) == 3
    assert all(isinstance(answer, DatabaseNotAnswering) for answer in failed), failed
    assert (late, made_count) == ("v2", 2)


def test_a_sessions_jobs_asking_together_read_its_version_once() -> None:
    class Source:
        def __init__(self) -> None:
            self.reads = 0
            self.fail = True

        async def current_version(self) -> str:
            self.reads += 1
            await asyncio.sleep(0.01)
            if self.fail:
                self.fail = False
                raise ConnectionError("the database went away")
            return f"v{self.reads}"

    async def scenario() -> tuple[list[BaseException | str], list[str], str, int]:
        source = Source()
        analysis = SessionAnalysis(source, Horizon(date(2026, 3, 2)), RupturaMode.INDEPENDENT)  # type: ignore[arg-type]
        failed = await asyncio.gather(
            *(analysis.version() for _ in range(3)), return_exceptions=True
        )
        read = await asyncio.gather(*(analysis.version() for _ in range(5)))
        return failed, read, await analysis.version(), source.reads

    failed, read, later, reads = asyncio.run(scenario())
    assert all(isinstance(answer, ConnectionError) for answer in failed)
    assert read == ["v2"] * 5 and later == "v2" and reads == 2


def test_a_sessions_slow_version_read_is_given_up_by_jobs_that_can_go_on_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job whose session reads a judged carteira waits for the version PROMPT_VERSION_SECONDS
    at most; later jobs do not wait for that read again; a job that needs it still gets it."""
    monkeypatch.setattr(SessionAnalysis, "PROMPT_VERSION_SECONDS", 1.0)
    answer: asyncio.Future[str] | None = None

    class Source:
        async def current_version(self) -> str:
            assert answer is not None
            return await answer

    async def scenario() -> tuple[str | None, str | None, bool, str, str | None]:
        nonlocal answer
        answer = asyncio.get_running_loop().create_future()
        analysis = SessionAnalysis(Source(), Horizon(date(2026, 3, 2)), RupturaMode.INDEPENDENT)  # type: ignore[arg-type]
        first = await asyncio.wait_for(analysis.prompt_version(), 5)
        later = await asyncio.wait_for(analysis.prompt_version(), 0.5)  # not a second wait
        waiting = asyncio.ensure_future(analysis.version())
        await asyncio.sleep(0.05)
        still_waiting = not waiting.done()
        answer.set_result("v1")
        return first, later, still_waiting, await waiting, await analysis.prompt_version()

    assert asyncio.run(scenario()) == (None, None, True, "v1", "v1")
