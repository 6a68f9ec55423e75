"""What every worker pool shares, written once: start-up and shut-down hooks (heartbeat, metrics
port, database engine), job instrumentation, the canary job, and the one constructor of an arq
worker (used by a worker process, and by the gateway's standby worker when a queue is not served).

A pool's `WorkerSettings` is a plain class of explicit attributes (arq ignores inherited ones)
holding only what differs between pools: functions, queue, concurrency and timeouts; it lives in
the pool's domain library, beside its jobs. `create()` adds what every pool shares (JSON
serializer, checked timeouts) and what the environment says (Redis, concurrency).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, ParamSpec, TypeVar, cast

from arq.typing import WorkerCoroutine
from arq.worker import Retry, Worker, create_worker
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from esteira_core import metrics
from esteira_core.db import create_db_engine
from esteira_core.heartbeats import Heartbeat, worker_id
from esteira_core.jobs import CanaryPayload, Pool
from esteira_core.logging import bind, configure_logging
from esteira_core.redis import arq_redis_settings
from esteira_core.serialization import deserialize_job, serialize_job
from esteira_core.settings import WorkerPoolSettings

logger = logging.getLogger(__name__)

Ctx = dict[str, Any]
REDIS_RETRY_SECONDS = 1.0
P = ParamSpec("P")
R = TypeVar("R")


def job_context(pool: Pool, member: str, path: str, **shared: Any) -> Ctx:
    """What every job of a pool finds in its ctx, besides what arq adds: the pool, who runs it
    (`member`), whether it runs on the queue's workers or in the gateway (`path`), and a
    counter of the jobs running now (arq copies ctx for each job; the counter is shared)."""
    return {
        **shared,
        "pool": pool,
        "worker_id": member,
        "path": path,
        "jobs_running": collections.Counter[str](),
    }


async def startup(ctx: Ctx) -> None:
    settings: WorkerPoolSettings = ctx["settings"]
    pool: Pool = ctx["pool"]
    running: collections.Counter[str] = ctx["jobs_running"]
    ctx["db"] = create_db_engine(settings)
    ctx["heartbeat"] = Heartbeat(
        ctx["redis"],
        pool.value,
        settings.heartbeat_interval_seconds,
        member=ctx["worker_id"],
        busy=lambda: running[pool.queue],
    )
    await ctx["heartbeat"].start()
    metrics.WORKER_CAPACITY.labels(pool.queue).set(ctx["max_jobs"])
    metrics.JOBS_IN_PROGRESS.labels(pool.queue).set(0)
    # Metrics last: once the port answers, the worker is online and ready for jobs. It stays up
    # for the life of the process, across restarts of arq's loop after a Redis outage.
    if "metrics_server" not in ctx:
        server, _thread = start_http_server(ctx["metrics_port"], addr=settings.metrics_host)
        ctx["metrics_server"] = server
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
            running: collections.Counter[str] = ctx["jobs_running"]
            started = time.time()
            enqueued = ctx.get("enqueue_time")
            if enqueued is not None:
                metrics.JOB_QUEUE_WAIT.labels(queue).observe(
                    max(0.0, started - enqueued.timestamp())
                )
            in_progress = metrics.JOBS_IN_PROGRESS.labels(queue)
            in_progress.inc()
            running[queue] += 1
            outcome = "failure"
            try:
                with bind(job_id=str(ctx.get("job_id", "")), job=name):
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
                running[queue] -= 1
                metrics.JOB_DURATION.labels(queue, name).observe(time.time() - started)
                metrics.JOBS.labels(queue, name, outcome).inc()

        return cast(WorkerCoroutine, run)

    return decorate


@instrumented("canary")
async def canary(ctx: Ctx, payload: dict[str, Any]) -> dict[str, Any]:
    """Answers which worker served it: proves a pool consumes its queue end to end."""
    note = CanaryPayload.from_kwargs(payload).note
    return {"pool": ctx["pool"].value, "worker": ctx["worker_id"], "note": note}


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
    JSON serializer, and whatever the caller adds (`arq_options`: hooks, a Redis pool, signal
    handling)."""
    return create_worker(
        worker_settings,
        **{**(overrides or {}), **configured_timeouts(worker_settings, settings, overrides)},
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
        max_jobs=max_jobs,
        ctx=ctx,
        **arq_options,
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
    try:
        # arq's loop ends with an exception when Redis goes away; the process stays and starts
        # the loop again once Redis answers (arq itself retries the first connection 5 times).
        while True:
            try:
                create(
                    worker_settings,
                    settings,
                    ctx=ctx,
                    max_jobs=max_jobs,
                    overrides=overrides,
                    redis_settings=arq_redis_settings(settings),
                    **hooks,
                ).run()
                return
            except (RedisError, OSError) as exc:
                logger.error(
                    "lost Redis; the worker starts again shortly",
                    extra={"pool": pool.value, "error": type(exc).__name__},
                )
                with suppress(Exception):
                    asyncio.get_event_loop().run_until_complete(hooks["on_shutdown"](ctx))
                time.sleep(REDIS_RETRY_SECONDS)
    finally:
        server = ctx.pop("metrics_server", None)
        if server is not None:
            server.shutdown()
