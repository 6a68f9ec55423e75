"""The loop watch tells a late event loop from a punctual one."""

import asyncio
import time

from esteira_core.loopwatch import LoopWatch


def test_a_loop_blocked_for_a_while_is_late_by_about_that_long_and_then_on_time_again():
    async def scenario() -> tuple[float, float, float, float]:
        watch = LoopWatch()
        unwatched = watch.late_seconds(10)
        ticking = asyncio.create_task(watch.run())
        await asyncio.sleep(0.2)
        punctual = watch.late_seconds(10)
        time.sleep(0.5)  # the loop is held, as a process without CPU would be
        overdue = watch.late_seconds(10)  # before the tick that is due has run
        await asyncio.sleep(0.2)
        remembered = watch.late_seconds(10)
        ticking.cancel()
        return unwatched, punctual, overdue, remembered

    unwatched, punctual, overdue, remembered = asyncio.run(scenario())
    assert unwatched == 0.0
    assert punctual < 0.2
    assert overdue >= 0.4
    assert remembered >= 0.4


def test_lateness_older_than_asked_is_forgotten():
    async def scenario() -> tuple[float, float]:
        watch = LoopWatch()
        ticking = asyncio.create_task(watch.run())
        await asyncio.sleep(0.1)
        time.sleep(0.5)
        await asyncio.sleep(0.6)
        recent, lately = watch.late_seconds(0.2), watch.late_seconds(5)
        ticking.cancel()
        return recent, lately

    recent, lately = asyncio.run(scenario())
    assert lately >= 0.4
    assert recent < 0.4
