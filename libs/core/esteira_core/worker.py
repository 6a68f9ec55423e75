"""What every worker pool shares, written once: start-up and shut-down hooks (heartbeat, metrics
port, database engine, the fair queue's feeder), job instrumentation, feeding the fair queue
after each job, the canary job, and the one constructor of an arq worker (used by a worker
process, and by the gateway's standby worker when a queue is not served).

A pool's `WorkerSettings` is a plain class of explicit attributes (arq ignores inherited ones)
holding only what differs between pools: functions, queue, concurrency and timeouts; it lives in
the pool's domain library, beside its jobs. `create()` adds what every pool shares (JSON
serializer, checked timeouts) and what the environment says (Redis, concurrency).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, NoReturn, ParamSpec, TypeVar, cast

from arq.constants import in_progress_key_prefix
from arq.typing import WorkerCoroutine
from arq.utils import timestamp_ms
from arq.worker import Retry, Worker, get_kwargs
from redis.exceptions import RedisError

from esteira_core import fair, heartbeats, keys, metrics
from esteira_core.db import create_db_engine
from esteira_core.heap import tune_collector
from esteira_core.heartbeats import Heartbeat, worker_id
from esteira_core.jobs import CanaryPayload, Pool
from esteira_core.logging import bind, configure_logging
from esteira_core.probes import Probes
from esteira_core.redis import REDIS_ERRORS, create_redis, give_up_riding_out, run_script
from esteira_core.serialization import deserialize_job, serialize_job
from esteira_core.settings import WorkerPoolSettings

logger = logging.getLogger(__name__)

Ctx = dict[str, Any]
REDIS_RETRY_SECONDS = 1.0
# A job that keeps its own deadline (`deadline`) ends this long before arq's timeout would
# cancel it, or at half the timeout for a short one: time to write what it gives up.
DEADLINE_MARGIN_SECONDS = 2.0
# As long as arq keeps a job's count of runs.
HANDBACKS_TTL_SECONDS = 24 * 60 * 60
# A job's ctx key: the places it took in its pool's fair-queue window (absent: one).
FAIR_PLACES = "fair_places"
P = ParamSpec("P")
R = TypeVar("R")


def job_context(pool: Pool, member: str, path: str, **shared: Any) -> Ctx:
    """What every job of a pool finds in its ctx, besides what arq adds: the pool, who runs it
    (`member`), and whether it runs on the queue's workers or in the gateway (`path`)."""
    return {
        **shared,
        "pool": pool,
        "worker_id": member,
        "path": path,
        # Shared by the copies of ctx arq hands its jobs: counts the fair-queue places the jobs
        # ended in this process freed, and tells a running job the process drains (a job's own
        # copy of "draining" never changes once it runs).
        "places_freed": itertools.count(1),
        "stopping": threading.Event(),
    }


async def startup(ctx: Ctx) -> None:
    settings: WorkerPoolSettings = ctx["settings"]
    pool: Pool = ctx["pool"]
    # A statement waiting for a lock someone else holds (a DBA's transaction, a nightly load)
    # gives up when its job would have: its job has ended by then, and a thread (and a
    # database backend) each try left waiting would otherwise be held as long as the lock.
    ctx["db"] = create_db_engine(settings, lock_timeout_seconds=ctx["job_timeout"])
    ctx["heartbeat"] = Heartbeat(
        ctx["redis"],
        pool.value,
        settings.heartbeat_interval_seconds,
        member=ctx["worker_id"],
        running=ctx["running_job_ids"],
    )
    await ctx["heartbeat"].start()
    queue: fair.FairQueue | None = ctx.get("fair_queue")
    if queue is not None:
        ctx["feeder"] = fair.Feeder(ctx["redis"], queue, settings.heartbeat_interval_seconds)
        ctx["feeder"].start()
    metrics.WORKER_CAPACITY.labels(pool.queue).set(ctx["max_jobs"])
    metrics.JOBS_IN_PROGRESS.labels(pool.queue).set(0)
    logger.info(
        "worker started",
        extra={
            "pool": pool.value,
            "metrics_port": ctx["metrics_port"],
            "max_jobs": ctx["max_jobs"],
        },
    )


async def shutdown(ctx: Ctx) -> None:
    """Idempotent: after a Redis outage it may run twice (arq's close, then ours)."""
    feeder = ctx.pop("feeder", None)
    if feeder is not None:
        await feeder.stop()
    heartbeat = ctx.pop("heartbeat", None)
    if heartbeat is not None:
        await heartbeat.stop()
    db = ctx.pop("db", None)
    if db is not None:
        db.dispose()
        logger.info("worker stopped", extra={"pool": ctx["pool"].value})


def instrumented(name: str) -> Callable[[Callable[P, Awaitable[R]]], WorkerCoroutine]:
    """Wraps a job function: job id in log lines, queue wait, duration, outcome, in-progress."""

    def decorate(job: Callable[P, Awaitable[R]]) -> WorkerCoroutine:
        @functools.wraps(job)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            ctx: Ctx = args[0]  # type: ignore[assignment]
            queue = ctx["pool"].queue
            started = time.time()
            enqueued = ctx.get("enqueue_time")
            if enqueued is not None:
                metrics.JOB_QUEUE_WAIT.labels(queue).observe(
                    max(0.0, started - enqueued.timestamp())
                )
            if ctx.get("draining"):
                # Fetched before the stop signal: hand it back at once, to whoever is alive.
                metrics.JOBS.labels(queue, name, "handed_back").inc()
                await hand_back(ctx)
            job_id = str(ctx.get("job_id", ""))
            in_progress = metrics.JOBS_IN_PROGRESS.labels(queue)
            in_progress.inc()
            outcome = "failure"
            try:
                with bind(job_id=job_id, job=name):
                    result = await job(*args, **kwargs)
                outcome = "success"
                return result
            except Retry:
                outcome = "retry"
                raise
            except asyncio.CancelledError:
                outcome = "cancelled"
                raise
            finally:
                in_progress.dec()
                metrics.JOB_DURATION.labels(queue, name).observe(time.time() - started)
                metrics.JOBS.labels(queue, name, outcome).inc()

        return cast(WorkerCoroutine, run)

    return decorate


async def hand_back(ctx: Ctx) -> NoReturn:
    """Gives the running job back to arq's queue, for a process that stays (raises arq's Retry).
    arq counts the run among the job's tries; the hand-back is counted too (when Redis answers),
    so that `tries` leaves it out: a rollout is no failure of the job's."""
    key = keys.job_handbacks(str(ctx.get("job_id", "")))
    with suppress(*REDIS_ERRORS):
        async with ctx["redis"].pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, HANDBACKS_TTL_SECONDS)
            await pipe.execute()
    raise Retry()


async def tries(ctx: Ctx) -> int:
    """The job's tries, this run included: arq's count of its runs, less the hand-backs. A run
    that ended neither in a result nor in a hand-back (its worker died in it, or lost Redis)
    counts as a try. The first run asks Redis nothing."""
    runs = int(ctx.get("job_try") or 1)
    if runs == 1:
        return 1
    with suppress(*REDIS_ERRORS):
        handed_back = await ctx["redis"].get(keys.job_handbacks(str(ctx.get("job_id", ""))))
        return max(1, runs - int(handed_back or 0))
    return runs


async def feed_after_job(ctx: Ctx) -> None:
    """A job ended and arq has taken it off its queue: its places in the pool's fair-queue
    window go to the next tenants' jobs (arq's after_job_end hook). One feed fills every free
    place, so a process feeds each time the jobs it ended free another `window // 4` places
    (every job for a small window): a pool of millisecond jobs pays a feed per few jobs, and
    its workers keep jobs ready. A job records the places it took in its ctx (FAIR_PLACES)."""
    queue: fair.FairQueue | None = ctx.get("fair_queue")
    if queue is None:
        return
    every = max(1, queue.window // 4)
    freed = list(itertools.islice(ctx["places_freed"], int(ctx.get(FAIR_PLACES, 1))))
    if all(n % every for n in freed):  # none of the places freed is an every-th
        return
    try:
        await fair.feed(ctx["redis"], queue)
    except REDIS_ERRORS as exc:
        logger.warning(
            "feeding the queue failed",
            extra={"pool": queue.pool.value, "error": type(exc).__name__},
        )


@instrumented("canary")
async def canary(ctx: Ctx, payload: dict[str, Any]) -> dict[str, Any]:
    """Answers which worker served it: proves a pool consumes its queue end to end."""
    note = CanaryPayload.from_kwargs(payload).note
    return {"pool": ctx["pool"].value, "worker": ctx["worker_id"], "note": note}


def deadline(ctx: Ctx) -> asyncio.Timeout:
    """The job's own time limit, short of arq's timeout. arq drops a job it timed out, with no
    retry and nothing said to whoever waits for it; a job that ends itself at this deadline
    (TimeoutError) can be tried again, or end its work in error, in its own hands."""
    job_timeout: float = ctx["job_timeout"]
    limit = max(job_timeout / 2, job_timeout - DEADLINE_MARGIN_SECONDS)
    return asyncio.timeout(limit)


# KEYS: the job's in-progress key, the queue. ARGV: the job's id, now (ms), how long the job is
# held (ms). Takes the job (holds it, returns its score) unless it runs elsewhere already, has
# left the queue, or is deferred past now: arq's own test, in one step.
_TAKE_JOB = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[3])
return score
"""


class ArqWorker(Worker):
    """arq's worker, taking each job in one Lua script. arq takes one with WATCH, EXISTS,
    ZSCORE and MULTI/EXEC: four round trips for every job, where a small ruptura job's own work
    makes two, and a round trip costs its client ~0.1 ms of CPU on loopback. The script decides
    the same, atomically too; and a job this worker is running is not taken again, whatever
    Redis says of it. (It overrides arq's `start_jobs` and uses arq's internals: arq's version
    is bounded in the project's dependencies.)"""

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        for job_id_b in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            job_id = job_id_b.decode()
            running = self.tasks.get(job_id)
            if running is not None and not running.done():
                # Its hold was lost (a Redis failover can lose the last writes): it is ours,
                # and runs. arq would run it a second time beside itself.
                self.sem.release()
                continue
            try:
                score = await run_script(
                    self.pool,
                    _TAKE_JOB,
                    [in_progress_key_prefix + job_id, self.queue_name],
                    [job_id, str(timestamp_ms()), str(int(self.in_progress_timeout_s * 1000))],
                )
            except BaseException:
                self.sem.release()
                raise
            if score is None:  # running elsewhere, finished, or deferred
                self.sem.release()
                continue
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task


def configured_timeouts(
    worker_settings: type,
    settings: WorkerPoolSettings | None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, float]:
    """The job timeout and completion wait: configured ones (a worker process's `settings`),
    else the pool's (its `overrides`, else its WorkerSettings), checked: a drained pod must be
    able to finish a job that is still within its timeout."""
    defaults = {
        "job_timeout": worker_settings.job_timeout,  # type: ignore[attr-defined]
        "job_completion_wait": worker_settings.job_completion_wait,  # type: ignore[attr-defined]
        **(overrides or {}),
    }
    job_timeout = (settings and settings.job_timeout_seconds) or defaults["job_timeout"]
    completion_wait = (settings and settings.job_completion_wait_seconds) or defaults[
        "job_completion_wait"
    ]
    if completion_wait <= job_timeout:
        raise ValueError(
            f"ESTEIRA_JOB_COMPLETION_WAIT_SECONDS ({completion_wait}) must exceed the job "
            f"timeout ({job_timeout}), or a drained worker abandons jobs it could finish"
        )
    return {"job_timeout": job_timeout, "job_completion_wait": completion_wait}


def create(
    worker_settings: type,
    settings: WorkerPoolSettings | None,
    *,
    ctx: Ctx,
    max_jobs: int,
    overrides: dict[str, Any] | None = None,
    **arq_options: Any,
) -> Worker:
    """An arq worker for a pool: its WorkerSettings, the configured and checked timeouts, our
    JSON serializer, the fair queue fed after each job (when ctx holds the pool's
    `fair_queue`), and whatever the caller adds (`arq_options`: hooks, a Redis pool, signal
    handling). The job timeout is in ctx too, for the jobs' own `deadline`."""
    timeouts = configured_timeouts(worker_settings, settings, overrides)
    ctx["job_timeout"] = timeouts["job_timeout"]
    return ArqWorker(
        **{
            **get_kwargs(worker_settings),
            **(overrides or {}),
            **timeouts,
            "job_serializer": serialize_job,
            "job_deserializer": deserialize_job,
            "after_job_end": feed_after_job,
            "max_jobs": max_jobs,
            "ctx": ctx,
            **arq_options,
        }
    )


def run(
    worker_settings: type,
    pool: Pool,
    *,
    default_metrics_port: int,
    settings: WorkerPoolSettings | None = None,
    shared: Ctx | None = None,
    overrides: dict[str, Any] | None = None,
) -> None:
    """Runs one worker process of `pool` until SIGTERM/SIGINT (after job_completion_wait).

    `shared` holds what the pool's jobs share for the life of the process (arq hands each job a
    copy of the worker's ctx, so state set by a job itself would not outlive the job).
    `overrides` replaces WorkerSettings attributes that depend on the configuration.
    A pool whose WorkerSettings names its own on_startup/on_shutdown calls ours from them."""
    settings = settings or WorkerPoolSettings()
    configure_logging(settings.log_level, settings.log_format)
    max_jobs = settings.worker_concurrency or worker_settings.max_jobs  # type: ignore[attr-defined]
    ctx = job_context(pool, worker_id(), "queue", **(shared or {}))
    ctx.update(
        settings=settings,
        max_jobs=max_jobs,
        metrics_port=settings.metrics_port or default_metrics_port,
    )
    hooks = {
        name: getattr(worker_settings, name, default)
        for name, default in (("on_startup", startup), ("on_shutdown", shutdown))
    }
    # The probe port first, for the life of the process: alive while Redis is still away.
    probes = Probes(
        stall_seconds=max(10.0, 3 * settings.heartbeat_interval_seconds),
        serving=lambda: "heartbeat" in ctx,
    )
    probes.serve(settings.metrics_host, ctx["metrics_port"])
    tune_collector()  # what every full collection would otherwise walk again, job after job
    try:
        # arq's loop ends with an exception when Redis goes away; the process stays and starts
        # the loop again once Redis answers (arq itself retries the first connection 5 times).
        while True:
            try:
                arq_worker = create(
                    worker_settings,
                    settings,
                    ctx=ctx,
                    max_jobs=max_jobs,
                    overrides=overrides,
                    # Ours, not arq's: Sentinels with their password, TLS with its CA, and
                    # commands that ride out a Redis restart or failover.
                    redis_pool=create_redis(settings, ride_out=True),
                    **hooks,
                )
                hold(arq_worker, ctx, settings.heartbeat_interval_seconds)
                for signum in (signal.SIGINT, signal.SIGTERM):
                    arq_worker.loop.add_signal_handler(
                        signum, functools.partial(_drain, arq_worker, ctx, signum)
                    )
                ticking = arq_worker.loop.create_task(probes.tick())
                try:
                    arq_worker.run()
                finally:
                    ticking.cancel()
                return
            except (RedisError, OSError) as exc:
                if ctx.get("draining"):
                    return  # told to stop while Redis is away: stop, don't start again
                logger.error(
                    "lost Redis; the worker starts again shortly",
                    extra={"pool": pool.value, "error": type(exc).__name__},
                )
                with suppress(Exception):
                    asyncio.get_event_loop().run_until_complete(hooks["on_shutdown"](ctx))
                time.sleep(REDIS_RETRY_SECONDS)
    finally:
        probes.close()


def hold(arq_worker: Worker, ctx: Ctx, interval: float) -> None:
    """The worker's running jobs are held (arq's in-progress keys) only while its heartbeat
    goes on, instead of for their whole timeout: see esteira_core.heartbeats."""
    arq_worker.in_progress_timeout_s = heartbeats.hold_seconds(interval)
    ctx["running_job_ids"] = lambda: list(arq_worker.tasks)


def _drain(arq_worker: Worker, ctx: Ctx, signum: int) -> None:
    """SIGTERM/SIGINT: start nothing more (jobs already fetched are handed back, see
    `instrumented`), let the running ones finish within job_completion_wait, then stop."""
    ctx["draining"] = True
    ctx["stopping"].set()
    give_up_riding_out(arq_worker.pool)
    arq_worker.handle_sig_wait_for_completion(signal.Signals(signum))
