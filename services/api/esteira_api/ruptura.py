"""The gateway's side of ruptura: starting sessions, reading them, analysing one order.

Routes (v1 and the seeds' compatibility routes) are thin adapters over these functions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from typing import Any

from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import Engine
from starlette.types import Scope

from esteira_api.context import Gateway
from esteira_api.errors import ApiError
from esteira_api.queue_health import REDIS_ERRORS
from esteira_api.settings import ApiSettings
from esteira_core import heartbeats, jobs, keys, metrics
from esteira_ruptura import data, sessions
from esteira_ruptura.batches import process_batch
from esteira_ruptura.models import OrderReport
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionAnalysis, SessionCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionStarted:
    session_id: str
    total: int
    batches: int
    mode: jobs.RupturaMode
    reference_date: date


def dedupe(order_numbers: Sequence[str]) -> list[str]:
    """Each order once, in the order first given."""
    return list(dict.fromkeys(order_numbers))


@dataclass(frozen=True)
class InlineAnswer:
    """Every result at once: what the gateway answers when it cannot record a session (Redis
    down), having analysed the orders itself."""

    total: int
    mode: jobs.RupturaMode
    reference_date: date
    results: list[dict[str, Any]]


async def _wanted_orders(
    db: Engine, settings: ApiSettings, order_numbers: Sequence[str] | None
) -> list[str]:
    if order_numbers is None:
        wanted = await asyncio.to_thread(_active_orders, db)
        if not wanted:
            raise ApiError(400, "no_active_orders", "The carteira has no active orders.")
    else:
        if not order_numbers:
            raise ApiError(400, "empty_order_list", "Send at least one order number in pedidos.")
        wanted = dedupe(order_numbers)
    if len(wanted) > settings.ruptura_max_orders:
        raise ApiError(
            413,
            "too_many_orders",
            f"{len(wanted)} orders exceed the limit of {settings.ruptura_max_orders} per session.",
        )
    return wanted


async def start_session(
    gateway: Gateway,
    *,
    order_numbers: Sequence[str] | None,
    mode: jobs.RupturaMode,
    reference_date: date | None,
    owner: str,
) -> SessionStarted | InlineAnswer:
    """Validates the request, then: queue mode, a session whose batches go to the workers;
    inline with Redis up (no worker serves the queue), a session whose batches this process
    runs in the background, followed by the client exactly the same way; inline with Redis
    down, every result in the answer."""
    settings = gateway.settings
    wanted = await _wanted_orders(gateway.db, settings, order_numbers)
    reference = reference_date or settings.today()
    decision = await gateway.health.decide(jobs.Pool.RUPTURA)
    if decision.reason != "redis_down":
        try:
            return await _session(gateway, wanted, mode, reference, owner, inline=decision.inline)
        except REDIS_ERRORS:
            gateway.health.redis_failed()
    metrics.INLINE_FALLBACKS.labels(jobs.RUPTURA_QUEUE, "redis_down").inc()
    results = await _analyse_all(gateway.db, settings, wanted, mode, reference)
    return InlineAnswer(len(wanted), mode, reference, results)


def _payloads(
    session_id: str,
    batches: list[list[str]],
    settings: ApiSettings,
    mode: jobs.RupturaMode,
    reference: date,
    total: int,
) -> list[tuple[str, jobs.RupturaBatchPayload]]:
    return [
        (
            f"ruptura-{session_id}-{index}",
            jobs.RupturaBatchPayload(
                session_id=session_id,
                batch_index=index,
                pedidos=batch,
                mode=mode,
                reference_date=reference,
                horizon_days=settings.ruptura_horizon_days,
                window_days=settings.ruptura_window_days,
                session_orders=total,
            ),
        )
        for index, batch in enumerate(batches)
    ]


async def _session(
    gateway: Gateway,
    wanted: list[str],
    mode: jobs.RupturaMode,
    reference: date,
    owner: str,
    *,
    inline: bool,
) -> SessionStarted:
    redis, settings = gateway.redis, gateway.settings
    session_id = uuid.uuid4().hex
    batches = sessions.batches_of(wanted, jobs.RUPTURA_BATCH_SIZE)
    await sessions.create(
        redis,
        session_id=session_id,
        owner=owner,
        total=len(wanted),
        batches=len(batches),
        mode=mode,
        path="inline" if inline else "queue",
        reference_date=reference,
        horizon_days=settings.ruptura_horizon_days,
        window_days=settings.ruptura_window_days,
    )
    payloads = _payloads(session_id, batches, settings, mode, reference, len(wanted))
    if inline:
        metrics.INLINE_FALLBACKS.labels(jobs.RUPTURA_QUEUE, "not_served").inc()
        gateway.spawn(_run_inline(redis, gateway.db, [p for _, p in payloads]))
    else:
        await jobs.enqueue_many(redis, jobs.Pool.RUPTURA, jobs.RUPTURA_ANALYSE_BATCH, payloads)
        metrics.JOBS_ENQUEUED.labels(jobs.RUPTURA_QUEUE).inc(len(payloads))
    logger.info(
        "ruptura session started",
        extra={
            "session_id": session_id,
            "orders": len(wanted),
            "batches": len(batches),
            "path": "inline" if inline else "queue",
        },
    )
    return SessionStarted(session_id, len(wanted), len(batches), mode, reference)


async def _run_inline(redis: ArqRedis, db: Engine, batches: list[jobs.RupturaBatchPayload]) -> None:
    """The batches of a session, run here one by one with the workers' own code."""
    cache = SessionCache(capacity=1)
    try:
        for batch in batches:
            await process_batch(redis, db, cache, batch)
            metrics.ORDERS_ANALYSED.labels(batch.mode.value, "inline").inc(len(batch.pedidos))
    except REDIS_ERRORS:
        logger.warning(
            "inline session interrupted: Redis failed", extra={"session_id": batches[0].session_id}
        )


async def _analyse_all(
    db: Engine, settings: ApiSettings, wanted: list[str], mode: jobs.RupturaMode, reference: date
) -> list[dict[str, Any]]:
    horizon = Horizon(reference, settings.ruptura_horizon_days, settings.ruptura_window_days)
    analysis = SessionAnalysis(
        db, horizon, mode, whole_carteira=len(wanted) >= jobs.RUPTURA_WHOLE_CARTEIRA_FROM
    )

    def analyse() -> list[dict[str, Any]]:
        return [
            result
            for batch in sessions.batches_of(wanted, jobs.RUPTURA_BATCH_SIZE)
            for result in analysis.analyse(batch)
        ]

    results = await asyncio.to_thread(analyse)
    metrics.ORDERS_ANALYSED.labels(mode.value, "inline").inc(len(results))
    return results


async def active_orders(db: Engine, limit: int) -> list[tuple[str, str]]:
    def read() -> list[tuple[str, str]]:
        with db.connect() as connection:
            return data.order_summaries(connection, limit)

    return await asyncio.to_thread(read)


def _active_orders(db: Engine) -> list[str]:
    with db.connect() as connection:
        return data.active_order_numbers(connection)


def _not_found(session_id: str) -> ApiError:
    return ApiError(404, "session_not_found", f"Session {session_id} does not exist or expired.")


def _owned(info: sessions.SessionInfo | None, session_id: str, tenant: str) -> sessions.SessionInfo:
    """Another tenant's session is, to this one, a session that does not exist."""
    if info is None or info.owner != tenant:
        raise _not_found(session_id)
    return info


async def session_info(redis: ArqRedis, session_id: str, tenant: str) -> sessions.SessionInfo:
    return _owned(await sessions.info(redis, session_id), session_id, tenant)


@dataclass(frozen=True)
class ResultsPage:
    info: sessions.SessionInfo
    results: list[bytes]  # stored JSON documents, passed through undecoded
    next_offset: int

    @property
    def done(self) -> bool:
        """Finished, and every result read: a client may stop polling."""
        return self.info.done and self.next_offset >= self.info.total


async def results_since(
    redis: ArqRedis, session_id: str, tenant: str, offset: int, limit: int
) -> ResultsPage:
    found = await sessions.results_since(redis, session_id, offset, limit)
    info, results = found if found is not None else (None, [])
    return ResultsPage(_owned(info, session_id, tenant), results, offset + len(results))


async def watch_results(
    gateway: Gateway,
    scope: Scope,
    session_id: str,
    tenant: str,
    offset: int,
    limit: int,
    wait: float,
) -> ResultsPage:
    """The results from `offset` now if there are any or the session is finished; else after
    the session's next batch, or `wait` seconds."""
    return await gateway.changes.answer(
        scope,
        keys.ruptura_session_events(session_id),
        wait,
        lambda: results_since(gateway.redis, session_id, tenant, offset, limit),
        lambda page: bool(page.results) or page.info.done,
    )


async def delete_session(redis: ArqRedis, session_id: str, tenant: str) -> None:
    await session_info(redis, session_id, tenant)
    if not await sessions.delete(redis, session_id):
        raise _not_found(session_id)


async def workers_online(redis: ArqRedis, settings: ApiSettings) -> int:
    return await heartbeats.workers_online(
        redis, jobs.Pool.RUPTURA.value, settings.heartbeat_interval_seconds
    )


NO_LISTENER_POLL_SECONDS = 1.0


def _progress_event(info: sessions.SessionInfo) -> str:
    body = {"processed": info.processed, "total": info.total, "done": info.done}
    return f"event: progress\ndata: {json.dumps(body)}\n\n"


async def session_events(
    gateway: Gateway, session_id: str, tenant: str, keepalive_seconds: float = 15
) -> AsyncIterator[str]:
    """Server-sent events: the progress now, then the progress after each change (one per batch,
    or one for several that finished together) until the session is done. Woken by the
    gateway's change listener, so a stream holds no Redis connection of its own; watching
    starts before the first read, so no batch finished in between is missed."""
    redis = gateway.redis
    with gateway.changes.watching(keys.ruptura_session_events(session_id)) as changed:
        info = await session_info(redis, session_id, tenant)
        yield _progress_event(info)
        while not info.done:
            # Without the listener (Redis lost, or not subscribed yet) look again each second.
            quiet = keepalive_seconds if gateway.changes.listening else NO_LISTENER_POLL_SECONDS
            with suppress(TimeoutError):
                async with asyncio.timeout(quiet):
                    await changed.wait()
            woken = changed.is_set()
            changed.clear()
            found = await sessions.info(redis, session_id)
            if found is None:
                yield 'event: gone\ndata: {"reason": "session deleted or expired"}\n\n'
                return
            if found.processed != info.processed or found.done:
                yield _progress_event(found)
            elif not woken:
                yield ": keepalive\n\n"
            info = found


async def analyse_order(
    redis: ArqRedis,
    db: Engine,
    settings: ApiSettings,
    num_pedido: str,
    mode: jobs.RupturaMode,
) -> OrderReport:
    """One order, analysed in this process, cached briefly in Redis (skipped if Redis is down)."""
    cache_key = keys.ruptura_order_cache(num_pedido, mode.value)
    if settings.ruptura_order_cache_seconds:
        try:
            cached = await redis.get(cache_key)
        except (RedisError, OSError):
            cached = None
        if cached:
            return OrderReport.model_validate_json(cached)
    horizon = Horizon(settings.today(), settings.ruptura_horizon_days, settings.ruptura_window_days)
    analysis = SessionAnalysis(db, horizon, mode)
    (result,) = await asyncio.to_thread(analysis.analyse, [num_pedido])
    metrics.ORDERS_ANALYSED.labels(mode.value, "sync").inc()
    if result["status"] != "analisado":
        raise ApiError(404, "order_not_found", f"Order {num_pedido} is not an active order.")
    report = OrderReport.model_validate(result)
    if settings.ruptura_order_cache_seconds:
        try:
            await redis.set(
                cache_key, report.model_dump_json(), ex=settings.ruptura_order_cache_seconds
            )
        except (RedisError, OSError):
            logger.warning("order cache unavailable", extra={"num_pedido": num_pedido})
    return report
