"""Long polls: a request that may wait for the next change of a scrape task or a ruptura
session instead of the client asking again every second.

Workers publish one message per change (a task's update, a session's batch) on the thing's
channel. Each gateway process listens to every change channel on one pub/sub connection
(pattern subscriptions) and wakes the requests waiting for that channel: a thousand waiting
clients cost the gateway a thousand idle futures, not a thousand Redis connections or a
thousand requests a second. While it is not listening (Redis down, reconnecting) nobody
waits: a long poll answers at once, as a plain poll would. The sessions' event streams are
woken the same way.

A popular OS's scrape task has a hundred followers or more, and each of its changes wakes them
all at once. Their reads after the wake-up can be one: a read of what the channel is about
(`answer(..., shared=True)`), begun after the message that woke them, answers every request
waiting on the channel that asks while it is in flight. Each request then sees what it may of
it (its own check, as on its first read, which is its own).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from redis.asyncio import Redis
from starlette.types import Scope

from esteira_core import keys

logger = logging.getLogger(__name__)

# Below the gateway pod's termination grace (30 s): at shutdown uvicorn lets held answers finish.
MAX_WAIT_SECONDS = 25.0
RECONNECT_SECONDS = 1.0
QUIET_READ_SECONDS = 1.0
# Where a request notes how long it waited, for the latency histogram (which measures the
# gateway's work, not the time a long poll held the line) and the Server-Timing header.
WAITED_SCOPE_KEY = "esteira.waited_seconds"

Answer = TypeVar("Answer")


class _Watched:
    """A channel someone waits on: their events, and the shared read in flight (with when it
    began), begun since the channel's last message."""

    __slots__ = ("events", "reading", "reading_since")

    def __init__(self) -> None:
        self.events: set[asyncio.Event] = set()
        self.reading: asyncio.Future[Any] | None = None
        self.reading_since = 0.0


class Changes:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.listening = False
        self._watched: dict[str, _Watched] = {}

    async def listen(self) -> None:
        """Runs for the gateway's life (a lifespan task), reconnecting after Redis errors."""
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.psubscribe(*keys.CHANGE_PATTERNS)
                    self.listening = True
                    while True:
                        # Bounded reads: a quiet minute is not a lost connection (a plain
                        # listen() would fail on the client's socket timeout).
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=QUIET_READ_SECONDS
                        )
                        if message is not None and message["type"] == "pmessage":
                            self._wake(message["channel"].decode())
            except Exception as exc:  # Redis errors above all; the listener must outlive them
                logger.warning(
                    "change listener stopped, restarting", extra={"error": type(exc).__name__}
                )
            finally:
                self.listening = False
                self._wake_everyone()
            await asyncio.sleep(RECONNECT_SECONDS)

    def _wake(self, channel: str) -> None:
        watched = self._watched.get(channel)
        if watched is not None:
            watched.reading = None  # it may have missed the change: later askers read again
            for event in watched.events:
                event.set()

    def _wake_everyone(self) -> None:
        for watched in self._watched.values():
            watched.reading = None
            for event in watched.events:
                event.set()

    @contextmanager
    def watching(self, channel: str) -> Iterator[asyncio.Event]:
        """An event set at each message on the channel (and whenever the listener loses
        Redis); the watcher clears it."""
        event = asyncio.Event()
        watched = self._watched.get(channel)
        if watched is None:
            watched = self._watched[channel] = _Watched()
        watched.events.add(event)
        try:
            yield event
        finally:
            watched.events.discard(event)
            if not watched.events:
                del self._watched[channel]

    async def answer(
        self,
        scope: Scope,
        channel: str,
        wait: float,
        read: Callable[[], Awaitable[Answer]],
        changed: Callable[[Answer], bool],
        *,
        shared: bool = False,
    ) -> Answer:
        """`read()` now if `changed` says its answer is news (or the caller does not wait, or
        nobody listens); else `read()` again after the channel's next message, or after
        `wait` seconds without one. Watching starts before the first read, so a change
        between the two is not missed.

        With `shared`, the read after the wait is shared (see the module): `read` must then
        depend on the channel alone, never on who asks, and the caller checks what the
        asker may see of its answer, as `changed` does of the first read's."""
        if wait <= 0 or not self.listening:
            return await read()
        with self.watching(channel) as event:
            found = await read()
            if changed(found):
                return found
            started = time.perf_counter()
            try:
                async with asyncio.timeout(min(wait, MAX_WAIT_SECONDS)):
                    await event.wait()
            except TimeoutError:
                pass
            scope[WAITED_SCOPE_KEY] = time.perf_counter() - started
            if shared:
                return await self._read_shared(channel, read, waiting_since=started)
            return await read()

    async def _read_shared(
        self, channel: str, read: Callable[[], Awaitable[Answer]], waiting_since: float
    ) -> Answer:
        """The channel's shared read in flight, if it began after the channel's last message
        and after this request started waiting (so it can show nothing older than what the
        request would read itself); else a new one, which later askers share."""
        watched = self._watched[channel]
        reading = watched.reading
        if reading is None or watched.reading_since < waiting_since:
            watched.reading_since = time.perf_counter()
            reading = watched.reading = asyncio.ensure_future(read())
            reading.add_done_callback(lambda done: self._read_done(watched, done))
        # Shielded: a client that goes away cancels its own wait, not the others' read.
        answer: Answer = await asyncio.shield(reading)
        return answer

    @staticmethod
    def _read_done(watched: _Watched, done: asyncio.Future[Any]) -> None:
        """A read that has answered is not shared any more: a later asker reads anew."""
        if watched.reading is done:
            watched.reading = None
