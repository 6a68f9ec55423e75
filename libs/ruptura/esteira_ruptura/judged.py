"""The whole carteira judged once for every worker, through Redis.

An order's report depends only on the data, the horizon and the mode, never on the session or
the worker. So a big session (and allocated mode, and a busy process's small ones) does not
judge the carteira in each worker that serves it: the first batch to need it claims the judgement
for the data's version (a key that is also the judge's lease), and that worker judges every
active order once, in a background task, writing each order's report JSON to a hash as it goes.
Every job, on any worker, then copies its batches' reports into its session's results in one
Lua call (sessions.copy_batches), as far as they are written: nothing is judged twice, and the
copying starts before the judging ends.

- A session reads one judged carteira from its first batch to its last (the id pinned in its
  hash), so its batches always agree with each other, whichever worker runs them.
- A judgement is keyed on the version of the data its session read when it started: a session
  started after a load never reads one judged before it (a new one is judged on the data as it
  is then: that version's, or a later one).
- A judge that dies (SIGKILL, a lost database) stops renewing its lease: within LEASE_SECONDS
  its judgement is gone, and the next batch that needs it claims a new one.
- A source without a version (the constant '') has its judgement reused for
  UNVERSIONED_FRESH_SECONDS only, which bounds how old its answers are.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress

from redis.asyncio import Redis

from esteira_core import heartbeats, keys, metrics
from esteira_core.jobs import RupturaMode
from esteira_core.redis import REDIS_ERRORS
from esteira_ruptura import data
from esteira_ruptura.analysis import allocate, group_by_order, judge_independent, rendered_orders
from esteira_ruptura.projection import Horizon
from esteira_ruptura.sources import CarteiraReading, CarteiraSource

logger = logging.getLogger(__name__)

# A batch whose orders are not judged yet looks again this often (at once when judged here).
POLL_SECONDS = 0.1
# A judge renews its lease this often; a dead one's judgement is gone LEASE_SECONDS later
# (what a SIGKILLed judge costs its sessions: about a heartbeat's silence).
LEASE_SECONDS = 3.0
RENEW_SECONDS = 0.5
# How long a finished judgement stays reusable by new sessions (every batch copied from it
# keeps it as long again as a session lives): a load changes the version, so only memory
# bounds it, except for a source without a version.
REUSE_SECONDS = 600
UNVERSIONED_FRESH_SECONDS = 30
# Lines read (and judged, and written) at a time: bounds a judge's memory, whatever the size
# of the carteira. Allocated mode judges every line at once (they compete) and writes this
# many orders at a time.
ROWS_PER_CHUNK = 20_000
ORDERS_PER_CHUNK = 2_500

# A chunk not written by then (the process is stopping, Redis is away) ends the judgement.
WRITE_TIMEOUT_SECONDS = 60


def rendered_reports(
    carteira: CarteiraReading, horizon: Horizon, mode: RupturaMode
) -> Iterator[dict[str, bytes]]:
    """Every active order's report JSON, a chunk of orders at a time."""
    projection = data.load_projection(carteira, horizon, None)
    if mode is RupturaMode.ALLOCATED:
        lines = data.load_lines(carteira, None)
        verdicts = allocate(lines, projection)
        groups = group_by_order(lines)
        numbers = list(groups)
        for start in range(0, len(numbers), ORDERS_PER_CHUNK):
            chosen = {
                number: groups[number] for number in numbers[start : start + ORDERS_PER_CHUNK]
            }
            yield rendered_orders(chosen, lines, verdicts, horizon, mode.value)
        return
    for lines in data.stream_lines(carteira, ROWS_PER_CHUNK):
        verdicts = judge_independent(lines, projection)
        yield rendered_orders(group_by_order(lines), lines, verdicts, horizon, mode.value)


def pointer(horizon: Horizon, mode: RupturaMode, version: str) -> str:
    """The key naming the judgement of the carteira's `version` for a horizon and a mode."""
    span = f"{horizon.start.isoformat()}:{horizon.days}:{horizon.window}"
    return keys.ruptura_judged(mode.value, span, version)


def _reuse_seconds(version: str) -> int:
    return REUSE_SECONDS if version else UNVERSIONED_FRESH_SECONDS


# KEYS: the pointer, the judgement's state. ARGV: its id, the lease (ms), the version asked,
# the judge (which process: what an operator looks for when one stalls).
_CLAIM = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], 'version', ARGV[3], 'judge', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""


# KEYS: the judgement's state and reports, the pointer it was claimed under, the pointer of
# the version it read. ARGV: its id, that version, its ttl, how long it is reused, the orders
# written. A judgement whose lease ran out (its state is gone, its batches moved on) is not
# revived; one missing reports its judge wrote (lost in a Redis failover: acknowledged by a
# primary that died before its replica had them) is not finished (-1): its batches would
# record those orders as not found.
_FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HLEN', KEYS[2]) < tonumber(ARGV[5]) then return -1 end
redis.call('HSET', KEYS[1], 'complete', 1, 'judged_version', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[1], 'XX', 'EX', ARGV[4])
-- Sessions that read the newer version find it too.
redis.call('SET', KEYS[4], ARGV[1], 'NX', 'EX', ARGV[4])
return 1
"""


# KEYS: a failed judgement's state, the pointer it was claimed under. ARGV: its id. The pointer
# goes only if it is still this judgement's.
_ABANDON = """
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
"""


class JudgeStopped(Exception):
    """The process stops in the middle of a judgement."""


class LeaseLost(Exception):
    """A judge was too slow to renew its lease: another judgement took its place."""


class ReportsLost(Exception):
    """Reports a judge wrote are not there (lost in a Redis failover): its batches judge again."""


async def find(redis: Redis, horizon: Horizon, mode: RupturaMode, version: str) -> str | None:
    """The judgement of `version` (being judged, or finished and fresh), if there is one."""
    found = await redis.get(pointer(horizon, mode, version))
    return None if found is None else found.decode()


class Judges:
    """The judgements a process runs for every worker, as background tasks (a job that claims
    one does not wait for it: its batches copy reports as they are written)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        # Per judgement running here: set (and replaced) as each chunk of reports is written.
        self._written: dict[str, asyncio.Event] = {}
        # Set when the process stops: a judge's thread gives up at its next chunk (the event
        # loop it writes through is about to stop).
        self._stopping = threading.Event()

    async def stop(self) -> None:
        """Ends this process's judgements (their batches claim new ones elsewhere at once).
        Once they have ended, new ones may start: a worker whose loop starts again after Redis
        was away stops its judges, then judges again (it judged nothing ever after, before)."""
        self._stopping.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._stopping.clear()

    def _wait_for(
        self, written: concurrent.futures.Future[None], loop: asyncio.AbstractEventLoop
    ) -> None:
        """A judge's thread waits for its chunk to be written, unless the process stops (or
        its event loop did, where nobody called stop: a gateway's standby worker)."""
        deadline = time.monotonic() + WRITE_TIMEOUT_SECONDS
        while True:
            if self._stopping.is_set() or not loop.is_running():
                written.cancel()
                raise JudgeStopped
            try:
                return written.result(timeout=RENEW_SECONDS)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    async def written(self, judged_id: str) -> None:
        """Returns once more reports may be there: as soon as this process writes its next
        chunk, else (judged elsewhere) after POLL_SECONDS."""
        event = self._written.get(judged_id)
        if event is None:
            await asyncio.sleep(POLL_SECONDS)
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), POLL_SECONDS)

    def _announce(self, judged_id: str, *, last: bool = False) -> None:
        event = self._written.pop(judged_id, None)
        if event is not None:
            event.set()
        if not last:
            self._written[judged_id] = asyncio.Event()

    async def claim(
        self,
        redis: Redis,
        source: CarteiraSource,
        horizon: Horizon,
        mode: RupturaMode,
        version: str,
    ) -> str:
        """The id of the judgement of `version`: the one found, or one this process starts."""
        named = pointer(horizon, mode, version)
        while True:
            found = await find(redis, horizon, mode, version)
            if found is not None:
                return found
            judged_id = uuid.uuid4().hex
            claimed = await redis.eval(  # type: ignore[misc]
                _CLAIM,
                2,
                named,
                keys.ruptura_judged_state(judged_id),
                judged_id,
                str(int(LEASE_SECONDS * 1000)),
                version,
                heartbeats.worker_id(),
            )
            if claimed:
                task = asyncio.create_task(
                    self._judge(redis, source, horizon, mode, judged_id, named),
                    name=f"judge-{judged_id}",
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return judged_id

    async def _judge(
        self,
        redis: Redis,
        source: CarteiraSource,
        horizon: Horizon,
        mode: RupturaMode,
        judged_id: str,
        claimed_under: str,
    ) -> None:
        state = keys.ruptura_judged_state(judged_id)
        reports = keys.ruptura_judged_reports(judged_id)
        loop = asyncio.get_running_loop()

        async def write(chunk: dict[str, bytes]) -> None:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.hset(reports, mapping=chunk)
                pipe.expire(reports, keys.RUPTURA_SESSION_TTL_SECONDS)
                await pipe.execute()
            self._announce(judged_id)

        def judge() -> tuple[str, int]:
            # A chunk is judged while the one before it is written: the judge waits for Redis
            # only when the next chunk is ready, and never holds more than two chunks.
            orders = 0
            writing: concurrent.futures.Future[None] | None = None
            try:
                with source.reading() as carteira:
                    version = carteira.version()
                    for chunk in rendered_reports(carteira, horizon, mode):
                        if writing is not None:
                            self._wait_for(writing, loop)
                        writing = asyncio.run_coroutine_threadsafe(write(chunk), loop)
                        orders += len(chunk)
                    if writing is not None:
                        self._wait_for(writing, loop)
            except BaseException:
                if writing is not None:
                    writing.cancel()  # a failed judgement writes nothing more
                raise
            return version, orders

        renewing = asyncio.create_task(self._renew(redis, claimed_under, state))
        started = time.monotonic()
        self._announce(judged_id)
        try:
            version, orders = await asyncio.to_thread(judge)
            renewing.cancel()
            finished = await redis.eval(  # type: ignore[misc]
                _FINISH,
                4,
                state,
                reports,
                claimed_under,
                pointer(horizon, mode, version),
                judged_id,
                version,
                str(keys.RUPTURA_SESSION_TTL_SECONDS),
                str(_reuse_seconds(version)),
                str(orders),
            )
            if finished == -1:
                raise ReportsLost(judged_id)
            if not finished:
                raise LeaseLost(judged_id)
        except Exception as exc:
            # Its batches find it gone and claim a new one.
            if isinstance(exc, JudgeStopped):
                logger.info("judging the carteira stopped", extra={"judged_id": judged_id})
            else:
                logger.exception(
                    "judging the carteira failed",
                    extra={"judged_id": judged_id, "error": type(exc).__name__},
                )
            with suppress(*REDIS_ERRORS):
                await redis.eval(_ABANDON, 2, state, claimed_under, judged_id)  # type: ignore[misc]
            return
        finally:
            renewing.cancel()
            self._announce(judged_id, last=True)
        metrics.CARTEIRA_JUDGEMENTS.labels(mode.value).inc()
        logger.info(
            "carteira judged",
            extra={
                "judged_id": judged_id,
                "orders": orders,
                "mode": mode.value,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    @staticmethod
    async def _renew(redis: Redis, claimed_under: str, state: str) -> None:
        lease = int(LEASE_SECONDS * 1000)
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            with suppress(*REDIS_ERRORS):
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.pexpire(claimed_under, lease)
                    pipe.pexpire(state, lease)
                    await pipe.execute()
