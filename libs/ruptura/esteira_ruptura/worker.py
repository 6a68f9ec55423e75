"""The ruptura pool: its job and the arq settings it runs with, one definition for every process
that serves the queue (the ruptura worker service, and the gateway's standby worker)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any, NoReturn

from arq.worker import Retry, func

from esteira_core import fair, jobs, keys, metrics, worker
from esteira_core.redis import REDIS_ERRORS
from esteira_ruptura import sources, use_cases
from esteira_ruptura.judged import Judges
from esteira_ruptura.service import SessionCache
from esteira_ruptura.settings import RupturaSettings

logger = logging.getLogger(__name__)


# A job is tried this many times (worker.tries: a draining worker's hand-back is no try). One
# that fails (its judged carteira lost again and again, the database or Redis away for longer
# than a worker rides out, its own deadline passed) is tried again this much later, times its
# try; its last try writes its orders in error, and so does the try after a last one that never
# ended (its worker died in it each time), so that its session ends. arq alone would drop such
# a job, and its session would wait for it forever.
TRIES = 5
RETRY_SECONDS = 2


class GaveUp(Exception):
    """The job's orders not written yet were written in error."""


@worker.instrumented(jobs.RUPTURA_ANALYSE_BATCH)
async def analyse_batch(ctx: worker.Ctx, payload: dict[str, Any]) -> dict[str, Any]:
    batch = jobs.RupturaBatchPayload.from_kwargs(payload)
    queue: fair.FairQueue | None = ctx.get("fair_queue")
    if queue is not None:  # what the job's end frees in the window (see worker.feed_after_job)
        ctx[worker.FAIR_PLACES] = queue.places(len(batch.pedidos))
    tried = await worker.tries(ctx)
    if tried > TRIES:
        await _give_up(ctx, batch, tried, "abandoned")
    try:
        async with worker.deadline(ctx):
            stored = await use_cases.analyse_batch(
                ctx["redis"],
                ctx["carteira"],
                ctx["ruptura_sessions"],
                ctx["ruptura_judges"],
                batch,
                stopping=ctx["stopping"].is_set,
            )
    except use_cases.Stopped:
        # Draining: the batches written stay written; the job's next run, on a worker that
        # stays, skips them and writes the rest.
        await worker.hand_back(ctx)
    except Exception as error:
        if tried < TRIES:
            logger.warning(
                "ruptura job failed; it will be tried again",
                extra={"try": tried, "error": type(error).__name__},
            )
            raise Retry(defer=RETRY_SECONDS * tried) from error
        await _give_up(ctx, batch, tried, type(error).__name__)
    metrics.ORDERS_ANALYSED.labels(batch.mode.value, ctx["path"]).inc(stored)
    return {"session_id": batch.session_id, "batch": batch.batch_index, "stored": stored}


async def _give_up(
    ctx: worker.Ctx, batch: jobs.RupturaBatchPayload, tried: int, reason: str
) -> NoReturn:
    """Writes the job's remaining orders in error (no detail of the failure: it may carry a
    secret), then fails the job; with Redis away too, a later try writes them."""
    try:
        failed = await use_cases.fail_batches(ctx["redis"], batch)
    except REDIS_ERRORS as error:
        raise Retry(defer=RETRY_SECONDS * TRIES) from error
    logger.error(
        "ruptura job given up; its orders are written in error",
        extra={"orders": failed, "try": tried, "reason": reason},
    )
    # Not chained to the failure: arq logs a failed job's exception with its traceback, and a
    # failure's message may carry a secret (a database URL's password).
    raise GaveUp(f"given up on try {tried}: {reason}") from None


def fair_queue(settings: RupturaSettings) -> fair.FairQueue:
    """How the pool's fair queue feeds arq's: a batch takes milliseconds, so four times a
    worker's default concurrency (in places of 5 batches) per worker keeps it busy between a
    job's end, the feed and arq's next poll, and a newcomer still waits behind only a fraction
    of a second of work."""
    return fair.FairQueue(
        jobs.Pool.RUPTURA,
        settings.ruptura_fair_window,
        settings.heartbeat_interval_seconds,
        # A small session's job (up to 5 batches) takes one place; a big session's, one per
        # 5 batches it carries: the window holds as many orders as it did in 5-batch jobs.
        units_per_place=jobs.RUPTURA_BATCH_SIZE * jobs.RUPTURA_BATCHES_PER_JOB,
    )


def shared(settings: RupturaSettings) -> worker.Ctx:
    """What the pool's jobs share for the life of a process: recent sessions' analyses, the
    carteira judgements it runs for every worker, and the fair queue they feed."""
    return {
        "ruptura_sessions": SessionCache(),
        "ruptura_judges": Judges(),
        "fair_queue": fair_queue(settings),
    }


# How often each worker looks for batches a Redis failover lost: a look walks every session
# not finished (10 sessions of 500 batches: ~10 ms of Redis; 100 of 5,000 batches, every job
# finished: ~0.6 s), and arq keeps a finished job's result, which a lost job is run again
# from, for 300 s (keep_result).
RECOVERY_SECONDS = 5.0


async def recover_lost_batches(ctx: worker.Ctx) -> None:
    """Every RECOVERY_SECONDS, runs again the jobs whose batches a Redis failover lost
    (use_cases.recover_lost_batches): one worker a period looks, whoever takes the period's
    key first, so the pool's size does not multiply the looks; a job is put back once."""
    period_ms = int(RECOVERY_SECONDS * 1000)
    while True:
        await asyncio.sleep(RECOVERY_SECONDS)
        try:
            redis = ctx["redis"]
            if await redis.set(keys.ruptura_recovery(), ctx["worker_id"], nx=True, px=period_ms):
                await use_cases.recover_lost_batches(redis, ctx["fair_queue"])
        except REDIS_ERRORS as exc:
            logger.warning(
                "looking for lost ruptura batches failed", extra={"error": type(exc).__name__}
            )
        except Exception:
            logger.exception("looking for lost ruptura batches failed")


async def startup(ctx: worker.Ctx) -> None:
    """A worker process's start: every pool's, then the carteira source its settings name (the
    gateway's standby worker finds the gateway's in its ctx instead), and the search for
    batches a Redis failover lost."""
    await worker.startup(ctx)
    ctx["carteira"] = sources.configured(
        ctx["settings"], ctx["db"], lock_timeout_seconds=ctx["job_timeout"]
    )
    ctx["recovery"] = asyncio.create_task(recover_lost_batches(ctx), name="ruptura-recovery")


async def shutdown(ctx: worker.Ctx) -> None:
    recovery = ctx.pop("recovery", None)
    if recovery is not None:
        recovery.cancel()
        with suppress(asyncio.CancelledError):
            await recovery
    await ctx["ruptura_judges"].stop()
    carteira = ctx.pop("carteira", None)
    if carteira is not None:
        carteira.close()
    await worker.shutdown(ctx)


class WorkerSettings:
    functions = [
        func(analyse_batch, name=jobs.RUPTURA_ANALYSE_BATCH),
        func(worker.canary, name=jobs.CANARY),
    ]
    queue_name = jobs.RUPTURA_QUEUE
    on_startup = startup
    on_shutdown = shutdown
    # A batch of 20 orders takes well under a second (a killed worker's batches run again once
    # its heartbeat stops, whatever the timeout), and
    # job_timeout < job_completion_wait < the pod's terminationGracePeriodSeconds (60).
    max_jobs = 8
    job_timeout = 30
    job_completion_wait = 40
    # The job counts its TRIES itself; arq's count also grows with every hand-back of a draining
    # worker, and arq drops a job past it unseen, so its ceiling is only a safety net.
    max_tries = 100
    keep_result = 300
    poll_delay = 0.02
    health_check_interval = 60
