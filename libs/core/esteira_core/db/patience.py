"""Waiting for a database that may hang instead of refusing: a server paused or stalled on its
disk, a connection lost in the middle of a query. Its reads run in threads, which nothing can
interrupt; what can be bounded is how long a request or a job waits for one.

A caller waits at most `seconds`: the engine's lock timeout and a margin (a read waiting for a
lock someone else holds fails by then with an error of its own), and never less than
READ_PATIENCE_SECONDS. A read still running after that hangs: it is left to end on its own, and
its caller gets DatabaseNotAnswering, as it would any error of the database. Then a circuit
breaker opens: for as long again, callers get it at once, without a read (a hundred requests
each waiting out the bound in turn, each holding a thread and a pooled connection, would be
worse than one); then one caller's read is let through as a probe, and its answer closes the
circuit. A read that timed out before it began (no thread free for it: the process is busy,
not the database) fails its caller without opening the circuit.

One Patience per engine (`patience_of`), shared by everything that reads through it: a gateway's
(lock timeout 2 s: 5 s) and a worker's (the job's timeout: longer than the job waits, so a job
is bounded by its deadline and by what it can do without the read, see esteira_ruptura).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine

from esteira_core.breaker import CircuitBreaker, State

P = ParamSpec("P")
R = TypeVar("R")

READ_PATIENCE_SECONDS = 5.0  # a read a request or a job waits for takes milliseconds
LOCK_MARGIN_SECONDS = 1.0


class DatabaseNotAnswering(Exception):
    """A read Esteira bounds did not end in time: the server, or the network to it, hangs."""


class Patience:
    def __init__(
        self, seconds: float = READ_PATIENCE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self._breaker = CircuitBreaker("database", seconds, clock)

    async def run(
        self, start: Callable[[], Awaitable[R]], began: Callable[[], bool] = lambda: True
    ) -> R:
        """Awaits what `start()` begins, at most `seconds`; raises DatabaseNotAnswering, without
        calling `start`, while the circuit is open. `began`: whether the read began (in its
        thread) by the time the bound ran out."""
        if not self._breaker.allow():
            raise DatabaseNotAnswering("the database hung a moment ago: not asking again yet")
        bound = asyncio.timeout(self.seconds)
        try:
            async with bound:
                answer = await start()
        except TimeoutError:
            if not bound.expired():
                self._breaker.success()  # the read's own error: the database answered
                raise
            if not began():
                self._settle_probe()
                raise DatabaseNotAnswering(
                    f"no thread free for the read in {self.seconds:g} s"
                ) from None
            self._breaker.failure()
            raise DatabaseNotAnswering(f"no answer within {self.seconds:g} s") from None
        except asyncio.CancelledError:
            self._settle_probe()  # the caller left: a probe's outcome is unknown
            raise
        except Exception:
            self._breaker.success()  # an error of the database's own: it answers
            raise
        self._breaker.success()
        return answer

    def _settle_probe(self) -> None:
        """A probe that tells nothing reopens the circuit, for another probe later: the circuit
        never stays half open with no probe under way."""
        if self._breaker.state is State.HALF_OPEN:
            self._breaker.failure()


_patience: weakref.WeakKeyDictionary[Engine, Patience] = weakref.WeakKeyDictionary()


def patience_of(engine: Engine) -> Patience:
    """The Patience of everything that reads through `engine` in this process."""
    found = _patience.get(engine)
    if found is None:
        found = _patience[engine] = Patience()
    return found


def keep_patience(engine: Engine, lock_timeout_seconds: float | None) -> None:
    """Gives `engine` the Patience its lock timeout calls for (create_db_engine)."""
    seconds = READ_PATIENCE_SECONDS
    if lock_timeout_seconds is not None:
        seconds = max(seconds, lock_timeout_seconds + LOCK_MARGIN_SECONDS)
    _patience[engine] = Patience(seconds)


async def read_in_thread(
    engine: Engine, read: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """`read(*args, **kwargs)`, a blocking read through `engine`, run in a thread and waited for
    with the engine's Patience."""
    begun = threading.Event()

    def run() -> R:
        begun.set()
        return read(*args, **kwargs)

    return await patience_of(engine).run(lambda: asyncio.to_thread(run), began=begun.is_set)
