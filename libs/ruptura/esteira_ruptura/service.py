"""Analysing orders in one process: what the gateway's inline path and single orders run, and
what a worker runs for a small session's batches. A `SessionAnalysis` keeps what its batches
have in common (the projection, and when it judges the whole carteira, the judged carteira),
so batches don't recompute it.

A worker's big sessions (and allocated ones, and small ones while it is busy) read a carteira
judged once for every worker instead (judged.py); `SessionCache` says which and remembers the
version a session started on."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from esteira_core.jobs import RupturaMode
from esteira_ruptura import data
from esteira_ruptura.analysis import (
    LineVerdicts,
    allocate,
    group_by_order,
    judge_independent,
    not_found,
    rendered_orders,
)
from esteira_ruptura.models import OrderLine
from esteira_ruptura.projection import Horizon, Projection
from esteira_ruptura.sources import CarteiraReading, CarteiraSource


@dataclass(frozen=True)
class JudgedCarteira:
    """Every active line of the carteira, judged at once, with each order's line indexes, and
    the version of the data they were read from."""

    version: str
    lines: list[OrderLine]
    verdicts: LineVerdicts
    by_order: dict[str, list[int]]


def judge_carteira(source: CarteiraSource, horizon: Horizon, mode: RupturaMode) -> JudgedCarteira:
    with source.reading() as carteira:  # the version and the data, read in one transaction
        version = carteira.version()
        lines = data.load_lines(carteira, None)
        projection = data.load_projection(carteira, horizon, None)
    judge_lines = allocate if mode is RupturaMode.ALLOCATED else judge_independent
    return JudgedCarteira(version, lines, judge_lines(lines, projection), group_by_order(lines))


class SessionAnalysis:
    """Everything needed to analyse any batch of one session, loaded at most once.

    Two ways, one answer (an order's verdict does not depend on the batch it comes in):
    - `whole_carteira` (big sessions, and always in allocated mode, where every line competes):
      the first call loads the carteira in four queries and judges it at once; each batch then
      only builds its reports.
    - otherwise (a few orders): each call loads its orders' lines, and the projection of the
      products not loaded yet; later calls reuse what earlier ones loaded.
    """

    def __init__(
        self,
        source: CarteiraSource,
        horizon: Horizon,
        mode: RupturaMode,
        *,
        whole_carteira: bool = False,
    ) -> None:
        self.source = source
        self.horizon = horizon
        self.mode = mode
        self.whole_carteira = whole_carteira or mode is RupturaMode.ALLOCATED
        self._lock = threading.Lock()
        self._version: asyncio.Future[str] | None = None
        self._version_asked_at = 0.0
        self._projection: Projection | None = None
        self._loaded_products: set[str] = set()
        self._judged: JudgedCarteira | None = None

    # A version's read takes milliseconds: one still running this long hangs, or waits for a
    # lock (a team's nightly load); a job that can go on without it does.
    PROMPT_VERSION_SECONDS = 5.0

    async def version(self) -> str:
        """The version of the data when the session started: read once here (by its first job
        in this process, so after the session started), whichever of its jobs ask together; a
        read that failed is made again by the next to ask."""
        return await asyncio.shield(self._version_read())

    async def prompt_version(self) -> str | None:
        """The version, or None once its read has run PROMPT_VERSION_SECONDS: at once for the
        jobs that ask later (a session whose carteira is judged and pinned needs none)."""
        reading = self._version_read()
        left = self._version_asked_at + self.PROMPT_VERSION_SECONDS - time.monotonic()
        bound = asyncio.timeout(max(left, 0.0))
        try:
            async with bound:
                return await asyncio.shield(reading)
        except TimeoutError:
            if not bound.expired():
                raise
            return None

    def _version_read(self) -> asyncio.Future[str]:
        reading = self._version
        if reading is None or (reading.done() and (reading.cancelled() or reading.exception())):
            reading = self._version = asyncio.ensure_future(self.source.current_version())
            reading.add_done_callback(_retrieved)  # a read no job waits for any more
            self._version_asked_at = time.monotonic()
        return reading

    def _projection_for(self, carteira: CarteiraReading, products: set[str]) -> Projection:
        missing = sorted(products - self._loaded_products)
        if missing or self._projection is None:
            loaded = data.load_projection(carteira, self.horizon, missing)
            self._projection = (
                loaded if self._projection is None else self._projection.merged_with(loaded)
            )
            self._loaded_products.update(missing)
        return self._projection

    def _judged_carteira(self) -> JudgedCarteira:
        if self._judged is None:
            self._judged = judge_carteira(self.source, self.horizon, self.mode)
        return self._judged

    def analyse(self, order_numbers: Sequence[str]) -> list[dict[str, Any]]:
        """One result per order number, in the order given (an OrderReport or, for an unknown
        order, an OrderNotFound, as JSON-ready dicts)."""
        return [orjson.loads(report) for report in self.rendered(order_numbers)]

    def rendered(self, order_numbers: Sequence[str]) -> list[bytes]:
        """The results of `analyse` as the JSON a session stores, built once (not as dicts
        encoded again)."""
        with self._lock:
            if self.whole_carteira:
                judged = self._judged_carteira()
                lines, verdicts = judged.lines, judged.verdicts
                groups = {n: judged.by_order[n] for n in order_numbers if n in judged.by_order}
            else:
                with self.source.reading() as carteira:
                    lines = data.load_lines(carteira, order_numbers)
                    projection = self._projection_for(
                        carteira, {line.cod_produto for line in lines}
                    )
                verdicts = judge_independent(lines, projection)
                groups = group_by_order(lines)
        reports = rendered_orders(groups, lines, verdicts, self.horizon, self.mode.value)
        return [reports.get(number) or not_found(number) for number in order_numbers]


class SessionCache:
    """The `SessionAnalysis` of recent sessions, per process (least recently used evicted). A
    session reads the carteira judged for every worker when it is big, or allocated, or when
    the process is busy: at least `busy_sessions` sessions started within `busy_seconds`, so
    that judging the carteira once costs less than loading it batch by batch for each of them.
    """

    def __init__(
        self,
        capacity: int = 256,
        ttl_seconds: float = 600,
        busy_sessions: int = 8,
        busy_seconds: float = 30.0,
    ) -> None:
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self.busy_sessions = busy_sessions
        self.busy_seconds = busy_seconds
        self._entries: OrderedDict[str, tuple[float, SessionAnalysis]] = OrderedDict()
        # When the latest `busy_sessions` sessions started here, oldest first.
        self._starts: deque[float] = deque(maxlen=busy_sessions)
        self._lock = threading.Lock()

    def _busy(self, now: float) -> bool:
        return (
            len(self._starts) == self.busy_sessions and now - self._starts[0] <= self.busy_seconds
        )

    def get(
        self,
        session_id: str,
        source: CarteiraSource,
        horizon: Horizon,
        mode: RupturaMode,
        *,
        whole_carteira: bool,
    ) -> SessionAnalysis:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None or now - entry[0] > self.ttl_seconds:
                analysis = SessionAnalysis(
                    source, horizon, mode, whole_carteira=whole_carteira or self._busy(now)
                )
                self._starts.append(now)
                entry = (now, analysis)
                self._entries[session_id] = entry
            self._entries.move_to_end(session_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return entry[1]


def _retrieved(reading: asyncio.Future[str]) -> None:
    """Marks a read's failure as seen: asyncio would log it as never retrieved otherwise."""
    if not reading.cancelled():
        reading.exception()
