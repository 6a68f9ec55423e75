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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import DeserializationError, deserialize_result
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from esteira_core import fair, jobs, keys, metrics
from esteira_core.db import DATABASE_ERRORS
from esteira_core.db.patience import read_in_thread
from esteira_core.errors import Invalid, NotFound, TooLarge
from esteira_core.jobs import RupturaBatchPayload, RupturaMode
from esteira_core.serialization import deserialize_job
from esteira_ruptura import data, judged, sessions
from esteira_ruptura.analysis import not_found
from esteira_ruptura.models import OrderFailed, OrderReport
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionAnalysis, SessionCache
from esteira_ruptura.settings import RupturaSettings
from esteira_ruptura.sources import CarteiraSource

logger = logging.getLogger(__name__)

# From this many orders a session is analysed from the whole carteira, judged once per process,
# instead of loading each batch's lines: one big read beats a thousand small ones.
WHOLE_CARTEIRA_FROM = 1000
# A job gives up (and is tried again later) after its judged carteira died this many times.
JUDGE_ATTEMPTS = 3
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
        wanted = await read_in_thread(carteira.engine, _active_orders, carteira)
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


def whole_carteira(orders: int) -> bool:
    """Whether a session of `orders` reads the whole carteira, judged once for every worker."""
    return orders >= WHOLE_CARTEIRA_FROM


def batches_per_job(orders: int) -> int:
    """How many batches each job of a session of `orders` carries (see `plan`)."""
    big = whole_carteira(orders)
    return jobs.RUPTURA_BATCHES_PER_BIG_JOB if big else jobs.RUPTURA_BATCHES_PER_JOB


def plan(
    session_id: str, wanted: Sequence[str], mode: RupturaMode, horizon: Horizon
) -> list[RupturaBatchPayload]:
    """The session's jobs, in the order given: one per RUPTURA_BATCHES_PER_JOB batches of
    RUPTURA_BATCH_SIZE orders, each batch still written and announced on its own. A worker's
    cost per job (arq's round trips, the session's state read, the instrumentation) is most of
    a small batch's, whether the batch copies reports judged for every worker or judges its
    own orders: a 40-order session is one job, not two. A session that reads the whole
    carteira judged has a job's batches copied in one Lua call, as far as they are judged:
    its jobs carry RUPTURA_BATCHES_PER_BIG_JOB batches, so arq's round trips are a small part
    of a job's."""
    size = jobs.RUPTURA_BATCH_SIZE
    per_job = size * batches_per_job(len(wanted))
    return [
        RupturaBatchPayload(
            session_id=session_id,
            batch_index=start // size,
            pedidos=list(wanted[start : start + per_job]),
            mode=mode,
            reference_date=horizon.start,
            horizon_days=horizon.days,
            window_days=horizon.window,
            session_orders=len(wanted),
        )
        for start in range(0, len(wanted), per_job)
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
    """Records the session and submits its batches to the pool's fair queue as the owner's, in
    one script (QuotaExceeded, and no session, when the owner would have more than
    `max_queued_orders` orders waiting). Whoever serves the queue runs them: the ruptura
    workers, or a gateway's standby worker while none is online (`path` says which the gateway
    expected, for the record)."""
    session_id = uuid.uuid4().hex
    planned = plan(session_id, wanted, mode, horizon)
    batches = -(-len(wanted) // jobs.RUPTURA_BATCH_SIZE)
    record = sessions.record(
        session_id=session_id,
        owner=owner,
        total=len(wanted),
        batches=batches,
        batches_per_job=batches_per_job(len(wanted)),
        mode=mode,
        path=path,
        reference_date=horizon.start,
        horizon_days=horizon.days,
        window_days=horizon.window,
    )
    named = [fair.Job(job_id(job), job, units=len(job.pedidos)) for job in planned]
    quota = fair.Quota(max_queued_orders, "orders", QUOTA_RETRY_AFTER_SECONDS)
    await fair.submit(redis, queue, jobs.RUPTURA_ANALYSE_BATCH, named, owner, quota, record)
    metrics.JOBS_ENQUEUED.labels(jobs.RUPTURA_QUEUE).inc(len(named))
    logger.info(
        "ruptura session started",
        extra={"session_id": session_id, "orders": len(wanted), "batches": batches},
    )
    return SessionStarted(session_id, len(wanted), batches, mode, horizon.start)


JOB_ID_PREFIX = "ruptura-"


def job_id(job: RupturaBatchPayload) -> str:
    """A session's job's arq id: `ruptura-<session>-<its first batch>`."""
    return f"{JOB_ID_PREFIX}{job.session_id}-{job.batch_index}"


def horizon_of(batch: RupturaBatchPayload) -> Horizon:
    return Horizon(batch.reference_date, batch.horizon_days, batch.window_days)


async def analyse_batch(
    redis: Redis,
    carteira: CarteiraSource,
    cache: SessionCache,
    judges: judged.Judges,
    job: RupturaBatchPayload,
    stopping: Callable[[], bool] = lambda: False,
) -> int:
    """Analyses and stores a job's batches, each on its own (a batch already written, by a
    previous try of the job, is skipped); returns the orders stored. Between two batches (two
    copies, from a judged carteira), a process `stopping` (draining) hands the rest back:
    Stopped, for another try elsewhere.

    The session reads a judged carteira (pinned in its hash, so every worker serving it reads
    the same) when one of its version is there, or when it judges the whole carteira and
    claims one; otherwise its batches judge their own orders here."""
    analysis = cache.get(
        job.session_id,
        carteira,
        horizon_of(job),
        job.mode,
        whole_carteira=whole_carteira(job.session_orders),
    )
    # A session that reads a judged carteira pinned already needs Redis alone: its jobs go on
    # without the data's version while the database is away, or hangs. Any other job needs
    # the version: it fails while the database is away (and is tried again later), and waits
    # for a slow read (a lock its deadline bounds).
    unread: Exception | None = None
    try:
        version = await analysis.prompt_version()
    except DATABASE_ERRORS as error:
        version, unread = None, error
    prepared = await _prepared(redis, job, version)
    if prepared is None:
        return 0
    batches, judged_id = prepared
    if batches and judged_id is None and version is None:  # it needs the version after all
        if unread is not None:
            raise unread
        version = await analysis.version()
        prepared = await _prepared(redis, job, version)
        if prepared is None:
            return 0
        batches, judged_id = prepared
    if not batches:
        return 0
    if judged_id is None and analysis.whole_carteira:
        assert version is not None  # read above when nothing is pinned
        judged_id = await _claim(redis, carteira, judges, job, version)
    if judged_id is None:
        return await _analyse_batches(redis, analysis, job, batches, stopping)
    return await _copy_batches(redis, carteira, judges, job, batches, judged_id, stopping)


async def _prepared(
    redis: Redis, job: RupturaBatchPayload, version: str | None
) -> tuple[list[tuple[int, Sequence[str]]], str | None] | None:
    """The job's batches not written yet, and the judged carteira its session reads (pinned
    now if the version names one and none was); None when the session is gone."""
    found = await sessions.prepare_job(
        redis,
        job.session_id,
        [index for index, _ in job.batches()],
        None if version is None else judged.pointer(horizon_of(job), job.mode, version),
    )
    if found is None:
        return None
    pending, judged_id = found
    return [(index, orders) for index, orders in job.batches() if index in pending], judged_id


async def _analyse_batches(
    redis: Redis,
    analysis: SessionAnalysis,
    job: RupturaBatchPayload,
    batches: Sequence[tuple[int, Sequence[str]]],
    stopping: Callable[[], bool],
) -> int:
    """A small session's batches, each judging its own orders here."""
    stored = 0
    for index, orders in batches:
        _stop_between_batches(stopping, index, job)
        encoded = await asyncio.to_thread(analysis.rendered, orders)
        if await sessions.record_batch(redis, job.session_id, index, encoded) >= 0:
            stored += len(orders)
    return stored


async def fail_batches(redis: Redis, job: RupturaBatchPayload) -> int:
    """A job's last try failed: its batches not written yet are written with every order in
    error (OrderFailed), so that its session ends; returns the orders written so."""
    found = await sessions.prepare_job(redis, job.session_id, [i for i, _ in job.batches()])
    if found is None:
        return 0
    pending = set(found[0])
    failed = 0
    for index, orders in job.batches():
        if index in pending:
            documents = [orjson.dumps(OrderFailed(num_pedido=n).model_dump()) for n in orders]
            if await sessions.record_batch(redis, job.session_id, index, documents) >= 0:
                failed += len(orders)
    return failed


async def recover_lost_batches(redis: Redis, queue: fair.FairQueue) -> int:
    """Runs again the jobs whose batches a Redis failover lost; returns how many.

    Replication is asynchronous: a batch's write acknowledged by a primary that dies before its
    replica has it is lost at the promotion, while the worker, riding the failover out, writes
    the job's end (arq's result) to the promoted replica. The job is finished, its batch not
    written, and its session would wait for it for ever. Such a job (sessions.lost_jobs) is put
    back on arq's queue from its result, which holds its payload, and runs again, skipping the
    batches written; one that had failed (its orders written in error by its last try, lost
    so too; or given up by arq) gets its batches not written written in error now."""
    recovered = 0
    lost_ids = await sessions.lost_jobs(redis, JOB_ID_PREFIX, job_key_prefix, result_key_prefix)
    for lost in lost_ids:
        finished = await redis.get(result_key_prefix + lost)
        if finished is None:
            continue  # run again already
        try:
            result = deserialize_result(finished, deserializer=deserialize_job)
            job = RupturaBatchPayload.from_kwargs(result.kwargs["payload"])
        except (DeserializationError, KeyError, TypeError, ValidationError):
            logger.warning("a lost ruptura job has no payload to run again", extra={"lost": lost})
            continue
        if result.success:
            named = fair.Job(lost, job, units=len(job.pedidos))
            again = await fair.requeue(redis, queue, jobs.RUPTURA_ANALYSE_BATCH, named, finished)
        else:
            again = await fail_batches(redis, job) > 0
        if again:
            recovered += 1
            logger.warning(
                "a finished ruptura job's batches were not written (lost in a Redis failover); "
                + ("it runs again" if result.success else "its orders are written in error"),
                extra={"lost": lost, "session_id": job.session_id},
            )
    return recovered


class Stopped(Exception):
    """The process stops: the job's batches from `batch_index` on were not written."""

    def __init__(self, batch_index: int) -> None:
        super().__init__(f"stopped before batch {batch_index}")
        self.batch_index = batch_index


def _stop_between_batches(
    stopping: Callable[[], bool], index: int, job: RupturaBatchPayload
) -> None:
    if index != job.batch_index and stopping():
        raise Stopped(index)


async def _claim(
    redis: Redis,
    carteira: CarteiraSource,
    judges: judged.Judges,
    job: RupturaBatchPayload,
    version: str,
) -> str:
    """The judged carteira of `version` the session reads from now on: found, or judged here
    (pinned in its hash, unless another worker pinned one first: that one, then)."""
    claimed = await judges.claim(redis, carteira, horizon_of(job), job.mode, version)
    return await sessions.pin_judged(redis, job.session_id, claimed)


async def _copy_batches(
    redis: Redis,
    carteira: CarteiraSource,
    judges: judged.Judges,
    job: RupturaBatchPayload,
    batches: Sequence[tuple[int, Sequence[str]]],
    judged_id: str,
    stopping: Callable[[], bool],
) -> int:
    """Copies the batches' reports from the judged carteira, as many at a time as are written
    (one Lua call); a judged carteira that died with its judge is claimed again (at most
    JUDGE_ATTEMPTS times), on the data's version then."""
    stored = 0
    attempts = 1
    remaining = [(index, [(n, not_found(n)) for n in orders]) for index, orders in batches]
    while remaining:
        _stop_between_batches(stopping, remaining[0][0], job)
        codes = await sessions.copy_batches(redis, job.session_id, judged_id, remaining)
        if codes == [sessions.SESSION_GONE]:
            break
        written = zip(remaining, codes, strict=False)  # up to the batch that stopped the copy
        stored += sum(len(orders) for (_, orders), code in written if code >= 0)
        if codes[-1] == sessions.NOT_JUDGED_YET:
            await judges.written(judged_id)
        elif codes[-1] == sessions.JUDGED_GONE:
            if attempts >= JUDGE_ATTEMPTS:
                raise RuntimeError(f"the carteira could not be judged {attempts} times")
            attempts += 1
            await sessions.unpin_judged(redis, job.session_id, judged_id)
            judged_id = await _claim(redis, carteira, judges, job, await carteira.current_version())
        else:
            break
        remaining = remaining[len(codes) - 1 :]
    return stored


async def analyse_now(
    carteira: CarteiraSource, wanted: Sequence[str], mode: RupturaMode, horizon: Horizon
) -> InlineAnswer:
    analysis = SessionAnalysis(carteira, horizon, mode, whole_carteira=whole_carteira(len(wanted)))
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
        version = await carteira.current_version()
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

    return await read_in_thread(source.engine, read)
