"""Waiting for a database that may hang instead of refusing: a server paused or stalled on its
disk, a connection lost in the middle of a query. Its reads run in threads, which nothing can
interrupt; what can be bounded is how long a request or a job waits for one.

A caller waits at most `seconds` (a read that takes longer is left to end on its own) and gets
DatabaseNotAnswering, as it would any error of the database. For `seconds` after that, callers
get it at once, without a read: a database that hung a moment ago most likely still hangs, and
a hundred requests each waiting out the bound in turn, each holding a thread and a pooled
connection, would be worse than one. Then the next caller tries again. One Patience per engine
(`patience_of`), shared by everything that reads through it.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine

from esteira_core.db.engine import DatabaseNotAnswering

P = ParamSpec("P")
R = TypeVar("R")

# A read a request or a job waits for takes milliseconds; a lock someone else holds is bounded
# by the lock timeout (2 s in a gateway). Longer than this, the database hangs.
READ_PATIENCE_SECONDS = 5.0


class Patience:
    def __init__(self, seconds: float = READ_PATIENCE_SECONDS) -> None:
        self.seconds = seconds
        self._silent_until = 0.0

    async def run(self, start: Callable[[], Awaitable[R]]) -> R:
        """Awaits what `start()` begins, at most `seconds`; raises DatabaseNotAnswering without
        calling `start` while the database is taken to hang."""
        if time.monotonic() < self._silent_until:
            raise DatabaseNotAnswering("the database hung a moment ago: not asking again yet")
        bound = asyncio.timeout(self.seconds)
        try:
            async with bound:
                return await start()
        except TimeoutError:
            if not bound.expired():
                raise  # the read's own
            self._silent_until = time.monotonic() + self.seconds
            raise DatabaseNotAnswering(f"no answer within {self.seconds:g} s") from None


_patience: weakref.WeakKeyDictionary[Engine, Patience] = weakref.WeakKeyDictionary()


def patience_of(engine: Engine) -> Patience:
    """The Patience of everything that reads through `engine` in this process."""
    found = _patience.get(engine)
    if found is None:
        found = _patience[engine] = Patience()
    return found


async def read_in_thread(
    engine: Engine, read: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """`read(*args, **kwargs)`, a blocking read through `engine`, run in a thread and waited for
    with the engine's Patience."""
    return await patience_of(engine).run(lambda: asyncio.to_thread(read, *args, **kwargs))
