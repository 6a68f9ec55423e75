"""Ruptura's use cases, each one function called the same way by a worker job and by the
gateway: start a session (validate, plan, record, queue), analyse one of its batches, analyse
orders at once (when Redis is down), analyse one order, list the carteira's active orders.

They read the carteira from a `CarteiraSource` (Esteira's tables, or a team's database through a
source profile), never older than the latest load when they start (see service.py and
analyse_order). They raise esteira_core.errors (the gateway maps each kind to one HTTP status).
Reading and deleting a session, with its ownership check, is the session store's (sessions.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from arq.connections import ArqRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from esteira_core import fair, jobs, keys, metrics
from esteira_core.errors import DomainError, Invalid, NotFound, TooLarge
from esteira_core.jobs import RupturaBatchPayload, RupturaMode
from esteira_ruptura import data, sessions
from esteira_ruptura.models import OrderReport
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionAnalysis, SessionCache
from esteira_ruptura.settings import RupturaSettings
from esteira_ruptura.sources import CarteiraSource

logger = logging.getLogger(__name__)

# From this many orders a session is analysed from the whole carteira, judged once per process,
# instead of loading each batch's lines: one big read beats a thousand small ones.
WHOLE_CARTEIRA_FROM = 1000
# A tenant over its quota of orders waiting may try again this much later: a worker analyses
# thousands of orders in that time.
QUOTA_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class SessionStarted:
    session_id: str
    total: int
    batches: int
    mode: RupturaMode
    reference_date: date


async def wanted_orders(
    carteira: CarteiraSource, settings: RupturaSettings, order_numbers: Sequence[str] | None
) -> list[str]:
    """The orders a request asks for (each once, in the order first given; None: every active
    order), refused when empty or over the limit."""
    if order_numbers is None:
        wanted = await asyncio.to_thread(_active_orders, carteira)
        if not wanted:
            raise Invalid("no_active_orders", "The carteira has no active orders.")
    else:
        if not order_numbers:
            raise Invalid("empty_order_list", "Send at least one order number in pedidos.")
        wanted = list(dict.fromkeys(order_numbers))
    if len(wanted) > settings.ruptura_max_orders:
        raise TooLarge(
            "too_many_orders",
            f"{len(wanted)} orders exceed the limit of {settings.ruptura_max_orders} per session.",
        )
    return wanted


@dataclass(frozen=True)
class InlineAnswer:
    """Every result at once, with no session: what the gateway answers when Redis is down."""

    total: int
    mode: RupturaMode
    reference_date: date
    results: list[dict[str, Any]]


def _active_orders(source: CarteiraSource) -> list[str]:
    with source.reading() as carteira:
        return data.active_order_numbers(carteira)


def plan(
    session_id: str, wanted: Sequence[str], mode: RupturaMode, horizon: Horizon
) -> list[RupturaBatchPayload]:
    """The session's jobs: one per RUPTURA_BATCH_SIZE orders, in the order given."""
    size = jobs.RUPTURA_BATCH_SIZE
    return [
        RupturaBatchPayload(
            session_id=session_id,
            batch_index=index,
            pedidos=list(wanted[start : start + size]),
            mode=mode,
            reference_date=horizon.start,
            horizon_days=horizon.days,
            window_days=horizon.window,
            session_orders=len(wanted),
        )
        for index, start in enumerate(range(0, len(wanted), size))
    ]


async def start_session(
    redis: ArqRedis,
    wanted: Sequence[str],
    mode: RupturaMode,
    horizon: Horizon,
    *,
    owner: str,
    path: str,
    queue: fair.FairQueue,
    max_queued_orders: int,
) -> SessionStarted:
    """Records the session and submits its batches to the pool's fair queue as the owner's
    (QuotaExceeded, and no session, when the owner would have more than `max_queued_orders`
    orders waiting). Whoever serves the queue runs them: the ruptura workers, or a gateway's
    standby worker while none is online (`path` says which the gateway expected, for the
    record)."""
    session_id = uuid.uuid4().hex
    batches = plan(session_id, wanted, mode, horizon)
    await sessions.create(
        redis,
        session_id=session_id,
        owner=owner,
        total=len(wanted),
        batches=len(batches),
        mode=mode,
        path=path,
        reference_date=horizon.start,
        horizon_days=horizon.days,
        window_days=horizon.window,
    )
    named = [
        fair.Job(f"ruptura-{session_id}-{batch.batch_index}", batch, units=len(batch.pedidos))
        for batch in batches
    ]
    quota = fair.Quota(max_queued_orders, "orders", QUOTA_RETRY_AFTER_SECONDS)
    try:
        await fair.submit(redis, queue, jobs.RUPTURA_ANALYSE_BATCH, named, owner, quota)
    except DomainError:
        await redis.delete(keys.ruptura_session(session_id))
        raise
    metrics.JOBS_ENQUEUED.labels(jobs.RUPTURA_QUEUE).inc(len(named))
    logger.info(
        "ruptura session started",
        extra={"session_id": session_id, "orders": len(wanted), "batches": len(batches)},
    )
    return SessionStarted(session_id, len(wanted), len(batches), mode, horizon.start)


def horizon_of(batch: RupturaBatchPayload) -> Horizon:
    return Horizon(batch.reference_date, batch.horizon_days, batch.window_days)


async def analyse_batch(
    redis: Redis, carteira: CarteiraSource, cache: SessionCache, batch: RupturaBatchPayload
) -> int:
    """Analyses and stores one batch; returns the results stored for the session so far, or
    sessions.SESSION_GONE / sessions.DUPLICATE_BATCH when there was nothing to do."""
    if not await sessions.batch_pending(redis, batch.session_id, batch.batch_index):
        return sessions.DUPLICATE_BATCH
    analysis = cache.get(
        batch.session_id,
        carteira,
        horizon_of(batch),
        batch.mode,
        whole_carteira=batch.session_orders >= WHOLE_CARTEIRA_FROM,
    )
    results = await asyncio.to_thread(analysis.analyse, batch.pedidos)
    encoded = [orjson.dumps(result) for result in results]
    return await sessions.record_batch(redis, batch.session_id, batch.batch_index, encoded)


async def analyse_now(
    carteira: CarteiraSource, wanted: Sequence[str], mode: RupturaMode, horizon: Horizon
) -> InlineAnswer:
    analysis = SessionAnalysis(
        carteira, horizon, mode, whole_carteira=len(wanted) >= WHOLE_CARTEIRA_FROM
    )
    results = await asyncio.to_thread(analysis.analyse, wanted)
    metrics.ORDERS_ANALYSED.labels(mode.value, "inline").inc(len(results))
    return InlineAnswer(len(results), mode, horizon.start, results)


async def analyse_order(
    redis: Redis,
    carteira: CarteiraSource,
    settings: RupturaSettings,
    num_pedido: str,
    mode: RupturaMode,
) -> OrderReport:
    """One order, analysed in this process, cached briefly in Redis (skipped if Redis is down).

    The cache is keyed on the carteira's version, read first (one small query): an answer cached
    before a load is never served after it. One judged after a load but cached under the
    version before it is merely fresher than its key says."""
    ttl = settings.ruptura_order_cache_seconds
    cache_key = ""
    if ttl:
        version = await asyncio.to_thread(carteira.version)
        cache_key = keys.ruptura_order_cache(num_pedido, mode.value, version)
        try:
            cached = await redis.get(cache_key)
        except (RedisError, OSError):
            cached = None
        if cached:
            return OrderReport.model_validate_json(cached)
    analysis = SessionAnalysis(carteira, settings.horizon(), mode)
    (result,) = await asyncio.to_thread(analysis.analyse, [num_pedido])
    metrics.ORDERS_ANALYSED.labels(mode.value, "sync").inc()
    if result["status"] != "analisado":
        raise NotFound("order_not_found", f"Order {num_pedido} is not an active order.")
    report = OrderReport.model_validate(result)
    if ttl:
        try:
            await redis.set(cache_key, report.model_dump_json(), ex=ttl)
        except (RedisError, OSError):
            logger.warning("order cache unavailable", extra={"num_pedido": num_pedido})
    return report


async def active_orders(source: CarteiraSource, limit: int) -> list[tuple[str, str]]:
    """The first active orders by number, with their cliente (what the operator page lists)."""

    def read() -> list[tuple[str, str]]:
        with source.reading() as carteira:
            return data.order_summaries(carteira, limit)

    return await asyncio.to_thread(read)
