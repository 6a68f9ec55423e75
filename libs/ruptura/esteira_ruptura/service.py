"""Analysing orders for a session: the one entry point the workers and the gateway's inline path
share. A `SessionAnalysis` keeps what its batches have in common (the projection, and in
allocated mode the allocation of the whole carteira), so batches don't recompute it.

Sessions of one process also share judged carteiras (`CarteiraSnapshots`): an order's verdict
depends only on the data, the horizon and the mode, never on the session, so when many
sessions run at once the carteira is judged once for all of them instead of batch by batch.
A snapshot is keyed on the version of the data it was judged on, so a session that starts after
a load never gets one judged before it."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from esteira_core.jobs import RupturaMode
from esteira_ruptura import data
from esteira_ruptura.analysis import (
    LineVerdicts,
    allocate,
    group_by_order,
    judge_independent,
    report_orders,
)
from esteira_ruptura.models import OrderLine, OrderNotFound
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


class CarteiraSnapshots:
    """Judged carteiras shared by the sessions of one process, per (horizon, mode): one is
    handed to a session only when it was judged on the version the session read when it started,
    and for at most `ttl_seconds` (what bounds the age of a source without a version). A session
    keeps the snapshot it started with, so its batches always agree with each other."""

    def __init__(self, ttl_seconds: float = 30.0) -> None:
        self.ttl_seconds = ttl_seconds
        self._entries: dict[tuple[Horizon, RupturaMode], tuple[float, JudgedCarteira]] = {}
        self._lock = threading.Lock()

    def fresh(self, horizon: Horizon, mode: RupturaMode, version: str) -> JudgedCarteira | None:
        entry = self._entries.get((horizon, mode))
        if entry is None or time.monotonic() - entry[0] > self.ttl_seconds:
            return None
        return entry[1] if entry[1].version == version else None

    def get(
        self, source: CarteiraSource, horizon: Horizon, mode: RupturaMode, version: str
    ) -> JudgedCarteira:
        """The fresh snapshot of `version`, or a new one (built once, however many sessions ask
        at once). A new one is judged on the data as it is now: `version`'s, or a later one."""
        with self._lock:
            judged = self.fresh(horizon, mode, version)
            if judged is None:
                judged = judge_carteira(source, horizon, mode)
                now = time.monotonic()
                self._entries = {
                    key: entry
                    for key, entry in self._entries.items()
                    if now - entry[0] <= self.ttl_seconds
                }
                self._entries[(horizon, mode)] = (now, judged)
            return judged


class SessionAnalysis:
    """Everything needed to analyse any batch of one session, loaded at most once.

    Two ways, one answer (an order's verdict does not depend on the batch it comes in):
    - `whole_carteira` (big sessions, busy processes, and always in allocated mode, where every
      line competes): the first call takes the judged carteira (from `snapshots` when given,
      shared with other sessions; else loaded in four queries and judged at once); each batch
      then only builds its reports.
    - otherwise (a few orders): each call loads its orders' lines, and the projection of the
      products not loaded yet; later calls reuse what earlier ones loaded.

    With `snapshots`, the first call reads the carteira's version (one small query): the session
    takes a snapshot of that version only, and a small session uses one if it is there anyway.
    """

    def __init__(
        self,
        source: CarteiraSource,
        horizon: Horizon,
        mode: RupturaMode,
        *,
        whole_carteira: bool = False,
        snapshots: CarteiraSnapshots | None = None,
    ) -> None:
        self.source = source
        self.horizon = horizon
        self.mode = mode
        self.snapshots = snapshots
        self.whole_carteira = whole_carteira or mode is RupturaMode.ALLOCATED
        self._lock = threading.Lock()
        self._version: str | None = None
        self._projection: Projection | None = None
        self._loaded_products: set[str] = set()
        self._judged: JudgedCarteira | None = None

    def _start(self, snapshots: CarteiraSnapshots) -> str:
        """The version the session started on; a small session takes a snapshot of it if one
        is there."""
        if self._version is None:
            self._version = self.source.version()
            if not self.whole_carteira:
                judged = snapshots.fresh(self.horizon, self.mode, self._version)
                if judged is not None:
                    self._judged, self.whole_carteira = judged, True
        return self._version

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
            self._judged = (
                self.snapshots.get(self.source, self.horizon, self.mode, self._version or "")
                if self.snapshots is not None
                else judge_carteira(self.source, self.horizon, self.mode)
            )
        return self._judged

    def analyse(self, order_numbers: Sequence[str]) -> list[dict[str, Any]]:
        """One result per order number, in the order given (an OrderReport or, for an unknown
        order, an OrderNotFound, as JSON-ready dicts)."""
        with self._lock:
            if self.snapshots is not None:
                self._start(self.snapshots)
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
        reports = report_orders(groups, lines, verdicts, self.horizon, self.mode.value)
        return [
            reports.get(number) or OrderNotFound(num_pedido=number).model_dump()
            for number in order_numbers
        ]


class SessionCache:
    """The `SessionAnalysis` of recent sessions, per process (least recently used evicted), and
    the carteira snapshots they share. A session judges the whole carteira (from a snapshot)
    when it is big, when a fresh snapshot of its version is there anyway, or when the process is
    busy: at least `busy_sessions` sessions started within a snapshot's lifetime, so that
    judging the carteira once costs less than loading it batch by batch for each of them."""

    def __init__(
        self,
        capacity: int = 256,
        ttl_seconds: float = 600,
        snapshots: CarteiraSnapshots | None = None,
        busy_sessions: int = 8,
    ) -> None:
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self.snapshots = snapshots or CarteiraSnapshots()
        self.busy_sessions = busy_sessions
        self._entries: OrderedDict[str, tuple[float, SessionAnalysis]] = OrderedDict()
        self._lock = threading.Lock()

    def _busy(self, now: float) -> bool:
        recent = self.snapshots.ttl_seconds
        started = sum(1 for created, _ in self._entries.values() if now - created <= recent)
        return started >= self.busy_sessions

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
                    source,
                    horizon,
                    mode,
                    whole_carteira=whole_carteira or self._busy(now),
                    snapshots=self.snapshots,
                )
                entry = (now, analysis)
                self._entries[session_id] = entry
            self._entries.move_to_end(session_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return entry[1]

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._entries.pop(session_id, None)
