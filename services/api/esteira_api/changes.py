"""Long polls: a request that may wait for the next change of a scrape task or a ruptura
session instead of the client asking again every second.

Workers publish one message per change (a task's update, a session's batch) on the thing's
channel. Each gateway process listens to every change channel on one pub/sub connection
(pattern subscriptions) and wakes the requests waiting for that channel: a thousand waiting
clients cost the gateway a thousand idle futures, not a thousand Redis connections or a
thousand requests a second. While it is not listening (Redis down, reconnecting) nobody
waits: a long poll answers at once, as a plain poll would. The sessions' event streams are
woken the same way.

A read of what a channel is about (a task) can be kept, and shared, until the channel's next
message (`latest`): every change is published, so until the next message a read begun after
the last one is what any other read would find. A popular OS's task has a hundred followers or
more, and each of its changes wakes them all at once: their reads after the wake-up are one,
and so are their polls until the next change. Each request then sees what it may of it. Only
what is never changed without a message may be kept so, and a kept read is dropped after
KEPT_SECONDS all the same (what changes without one: a key's expiry).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterator
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
# How long a read is kept at most, without a message (see the module).
KEPT_SECONDS = 1.0
# Where a request notes how long it waited, for the latency histogram (which measures the
# gateway's work, not the time a long poll held the line) and the Server-Timing header.
WAITED_SCOPE_KEY = "esteira.waited_seconds"

Answer = TypeVar("Answer")


class _Kept:
    """A read kept for a channel: its answer (or the read in flight), and when it began."""

    __slots__ = ("answer", "began")

    def __init__(self, answer: asyncio.Future[Any], began: float) -> None:
        self.answer = answer
        self.began = began


class _Abandoned(Exception):
    """The request that began a kept read went away before it answered."""


def _failed(answer: asyncio.Future[Any]) -> bool:
    return answer.done() and (answer.cancelled() or answer.exception() is not None)


class Changes:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.listening = False
        self._waiters: dict[str, set[asyncio.Event]] = {}
        # Insertion order is the order they began in, so the oldest are first.
        self._kept: OrderedDict[str, _Kept] = OrderedDict()

    async def listen(self) -> None:
        """Runs for the gateway's life (a lifespan task), reconnecting after Redis errors."""
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.psubscribe(*keys.CHANGE_PATTERNS)
                    confirmed = 0
                    while True:
                        # Bounded reads: a quiet minute is not a lost connection (a plain
                        # listen() would fail on the client's socket timeout).
                        message = await pubsub.get_message(timeout=QUIET_READ_SECONDS)
                        if message is None:
                            continue
                        if message["type"] == "pmessage":
                            self._wake(message["channel"].decode())
                        elif message["type"] == "psubscribe":
                            # Listening once Redis confirms every pattern. A client that
                            # retries on connection errors (Sentinel's) reconnects and
                            # subscribes again without a word: a confirmation more says so,
                            # and whatever was published meanwhile was missed.
                            confirmed += 1
                            if confirmed > len(keys.CHANGE_PATTERNS):
                                self._wake_everyone()
                            self.listening = confirmed >= len(keys.CHANGE_PATTERNS)
            except Exception as exc:  # Redis errors above all; the listener must outlive them
                logger.warning(
                    "change listener stopped, restarting", extra={"error": type(exc).__name__}
                )
            finally:
                self.listening = False
                self._wake_everyone()
            await asyncio.sleep(RECONNECT_SECONDS)

    def _wake(self, channel: str) -> None:
        self._kept.pop(channel, None)  # it may have missed the change
        for event in self._waiters.get(channel, ()):
            event.set()

    def _wake_everyone(self) -> None:
        self._kept.clear()
        for waiting in self._waiters.values():
            for event in waiting:
                event.set()

    @contextmanager
    def watching(self, channel: str) -> Iterator[asyncio.Event]:
        """An event set at each message on the channel (and whenever the listener loses
        Redis); the watcher clears it."""
        event = asyncio.Event()
        waiting = self._waiters.setdefault(channel, set())
        waiting.add(event)
        try:
            yield event
        finally:
            waiting.discard(event)
            if not waiting:
                del self._waiters[channel]

    async def latest(self, channel: str, read: Callable[[], Coroutine[Any, Any, Answer]]) -> Answer:
        """What `read()` answers, kept (see the module): the read kept for the channel, done or
        in flight, if it began after the channel's last message and less than KEPT_SECONDS
        ago; else this request's own, kept in its place. `read` must depend on the channel
        alone, never on who asks. A read that failed is read again; while nobody listens
        nothing is kept. A kept answer is returned at once, and a request reads in its own
        turn: no task of its own, no turn of the event loop more than an unkept read."""
        if not self.listening:
            return await read()
        now = time.monotonic()
        kept = self._kept.get(channel)
        if kept is not None and now - kept.began <= KEPT_SECONDS and not _failed(kept.answer):
            if kept.answer.done():
                answer: Answer = kept.answer.result()
                return answer
            try:
                # Shielded: a client that goes away cancels its own wait, not the read.
                answer = await asyncio.shield(kept.answer)
                return answer
            except _Abandoned:  # the request reading it went away first
                return await read()
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._keep(channel, future, now)
        try:
            answer = await read()
        except BaseException as error:
            gone = isinstance(error, asyncio.CancelledError)
            future.set_exception(_Abandoned() if gone else error)
            future.exception()  # retrieved: nobody may be waiting for it
            raise
        future.set_result(answer)
        return answer

    def _keep(self, channel: str, answer: asyncio.Future[Any], now: float) -> None:
        self._kept[channel] = _Kept(answer, now)
        self._kept.move_to_end(channel)
        # The reads too old to be used again (whoever awaits one still has it).
        while self._kept and now - next(iter(self._kept.values())).began > KEPT_SECONDS:
            self._kept.popitem(last=False)

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
