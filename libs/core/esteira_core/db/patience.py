"""Waiting for a database that may hang instead of refusing: a server paused or stalled on its
disk, a connection lost in the middle of a query. Its reads run in threads, which nothing can
interrupt; what can be bounded is how long a request or a job waits for one.

A caller waits at most `seconds`: the engine's lock timeout and a margin (a read waiting for a
lock someone else holds fails by then with an error of its own), and never less than
READ_PATIENCE_SECONDS. A read still running after that hangs: it is left to end on its own, and
its caller gets DatabaseNotAnswering, as it would any error of the database. Then a circuit
breaker opens: for READ_PATIENCE_SECONDS, callers get it at once, without a read (a hundred
requests each waiting out the bound in turn, each holding a thread and a pooled connection,
would be worse than one); then one caller's read is let through as a probe, and its answer
closes the circuit. A read that timed out before it began (no thread free for it: the process
is busy, not the database) fails its caller without opening the circuit.

One Patience per engine (`patience_of`), shared by everything that reads through it: a gateway's
(lock timeout 2 s: 5 s) and a worker's (the job's timeout: longer than the job waits, so a job
is bounded by its deadline and by what it can do without the read, see esteira_ruptura).
"""

from __future__ import annotations

import asyncio
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
        self,
        seconds: float = READ_PATIENCE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        name: str = "database",
    ) -> None:
        self.seconds = seconds
        # Open for READ_PATIENCE_SECONDS at most, however long a read may wait: a worker's jobs
        # that need the database fail at once while it is open, and spend a try each time.
        self._breaker = CircuitBreaker(name, min(seconds, READ_PATIENCE_SECONDS), clock)

    async def run(
        self, start: Callable[[], Awaitable[R]], began: Callable[[], bool] = lambda: True
    ) -> R:
        """Awaits what `start()` begins, at most `seconds`; raises DatabaseNotAnswering, without
        calling `start`, while the circuit is open. `began`: whether the read began (in its
        thread) by the time the bound ran out."""
        if not self._breaker.allow():
            raise DatabaseNotAnswering("the database hung a moment ago: not asking again yet")
        # Only the probe's outcome closes the circuit: a read let through before it opened may
        # end long after, and tells nothing of the database now.
        probe = self._breaker.state is State.HALF_OPEN
        answered = False
        bound = asyncio.timeout(self.seconds)
        try:
            async with bound:
                answer = await start()
            answered = True
            return answer
        except TimeoutError:
            if not bound.expired():
                answered = True  # the read's own error: the database answered
                raise
            if not began():
                raise DatabaseNotAnswering(
                    f"no thread free for the read in {self.seconds:g} s"
                ) from None
            self._breaker.failure()
            raise DatabaseNotAnswering(f"no answer within {self.seconds:g} s") from None
        except asyncio.CancelledError:
            raise  # the caller left: its read tells nothing
        except Exception:
            answered = True  # an error of the database's own: it answers
            raise
        finally:
            if probe and answered:
                self._breaker.success()
            elif probe:  # the circuit never stays half open with no probe under way
                self._breaker.failure()


_patience: weakref.WeakKeyDictionary[Engine, Patience] = weakref.WeakKeyDictionary()


def patience_of(engine: Engine) -> Patience:
    """The Patience of everything that reads through `engine` in this process."""
    found = _patience.get(engine)
    if found is None:
        found = _patience[engine] = Patience()
    return found


def keep_patience(engine: Engine, lock_timeout_seconds: float | None) -> None:
    """Gives `engine` the Patience its lock timeout calls for (create_db_engine), its circuit
    named after the server and database (never the URL: it may carry a password)."""
    seconds = READ_PATIENCE_SECONDS
    if lock_timeout_seconds is not None:
        seconds = max(seconds, lock_timeout_seconds + LOCK_MARGIN_SECONDS)
    url = engine.url
    _patience[engine] = Patience(seconds, name=f"database {url.host}:{url.port}/{url.database}")


async def read_in_thread(
    engine: Engine, read: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """`read(*args, **kwargs)`, a blocking read through `engine`, run in a thread and waited for
    with the engine's Patience."""
    began: list[bool] = []  # a flag the thread raises (an Event costs a lookup microseconds)

    def run() -> R:
        began.append(True)
        return read(*args, **kwargs)

    return await patience_of(engine).run(lambda: asyncio.to_thread(run), began=lambda: bool(began))
