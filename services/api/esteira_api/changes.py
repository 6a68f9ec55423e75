"""Long polls: a request that may wait for the next change of a scrape task or a ruptura
session instead of the client asking again every second.

Workers publish one message per change (a task's update, a session's batch) on the thing's
channel. Each gateway process listens to every change channel on one pub/sub connection
(pattern subscriptions) and wakes the requests waiting for that channel: a thousand waiting
clients cost the gateway a thousand idle futures, not a thousand Redis connections or a
thousand requests a second. While it is not listening (Redis down, reconnecting) nobody
waits: a long poll answers at once, as a plain poll would. The sessions' event streams are
woken the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

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


class Changes:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.listening = False
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

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
        for event in self._waiters.get(channel, ()):
            event.set()

    def _wake_everyone(self) -> None:
        for waiting in self._waiters.values():
            for event in waiting:
                event.set()

    @contextmanager
    def watching(self, channel: str) -> Iterator[asyncio.Event]:
        """An event set at each message on the channel (and whenever the listener loses
        Redis); the watcher clears it."""
        event = asyncio.Event()
        self._waiters[channel].add(event)
        try:
            yield event
        finally:
            waiting = self._waiters[channel]
            waiting.discard(event)
            if not waiting:
                del self._waiters[channel]

    async def answer(
        self,
        scope: Scope,
        channel: str,
        wait: float,
        read: Callable[[], Awaitable[Answer]],
        changed: Callable[[Answer], bool],
    ) -> Answer:
        """`read()` now if `changed` says its answer is news (or the caller does not wait, or
        nobody listens); else `read()` again after the channel's next message, or after
        `wait` seconds without one. Watching starts before the first read, so a change
        between the two is not missed."""
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
            return await read()
