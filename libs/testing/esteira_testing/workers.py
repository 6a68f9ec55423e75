"""An Esteira arq worker (esteira_core.worker.ArqWorker) run in a test's own event loop, with
the project's job serializer: for tests of how jobs are taken, run and counted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from arq.connections import ArqRedis
from arq.worker import func

from esteira_core.serialization import deserialize_job, serialize_job
from esteira_core.worker import ArqWorker


def in_process_worker(
    redis: ArqRedis,
    queue_name: str,
    functions: dict[str, Callable[..., Awaitable[Any]]],
    *,
    max_jobs: int,
    poll_delay: float,
) -> ArqWorker:
    """A worker of `queue_name` running `functions` (by name), without signal handlers: start
    it with `asyncio.create_task(worker.async_run())`, stop it by cancelling that task."""
    return ArqWorker(
        functions=[func(run, name=name) for name, run in functions.items()],  # type: ignore[arg-type]
        queue_name=queue_name,
        redis_pool=redis,
        max_jobs=max_jobs,
        poll_delay=poll_delay,
        handle_signals=False,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )
