"""Waiting for a database that may hang (esteira_core.db.patience): a read that hangs costs
its caller the bound, not the hang; callers just after it are answered at once; later ones
read again."""

import asyncio
import threading

import pytest
from sqlalchemy import create_engine

from esteira_core.db import DatabaseNotAnswering
from esteira_core.db.patience import Patience, patience_of, read_in_thread


def test_a_hung_read_costs_the_bound_then_callers_are_answered_at_once_then_read_again() -> None:
    hang = threading.Event()
    reads: list[str] = []

    def read(name: str) -> str:
        reads.append(name)
        if name == "hangs":
            hang.wait(10)
        return name

    async def scenario() -> str:
        patience = Patience(0.2)
        with pytest.raises(DatabaseNotAnswering):
            await asyncio.wait_for(patience.run(lambda: asyncio.to_thread(read, "hangs")), 5)
        with pytest.raises(DatabaseNotAnswering):  # at once: never begun
            await asyncio.wait_for(patience.run(lambda: asyncio.to_thread(read, "skipped")), 0.1)
        await asyncio.sleep(0.25)
        answer = await patience.run(lambda: asyncio.to_thread(read, "again"))
        hang.set()
        return answer

    assert asyncio.run(scenario()) == "again"
    assert reads == ["hangs", "again"]


def test_everything_reading_through_one_engine_shares_its_patience() -> None:
    engine, other = create_engine("sqlite://"), create_engine("sqlite://")
    assert patience_of(engine) is patience_of(engine)
    assert patience_of(engine) is not patience_of(other)
    assert asyncio.run(read_in_thread(engine, lambda a, b: a + b, 1, b=2)) == 3
