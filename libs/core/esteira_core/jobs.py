"""The job contracts between the gateway and the workers: queue names, job names, payloads.

The gateway imports this module, never worker code. A payload travels as one JSON object in the
arq job's `payload` keyword argument and is validated again by the worker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date
from enum import StrEnum
from typing import Any, Self

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from pydantic import BaseModel, ConfigDict, Field

from esteira_core.serialization import serialize_job as serialize_job_record


class Pool(StrEnum):
    """A worker pool, named as in metrics, heartbeats and the CLI."""

    RUPTURA = "ruptura"
    SCRAPER = "scraper"

    @property
    def queue(self) -> str:
        return f"arq:queue:{self.value}"


RUPTURA_QUEUE = Pool.RUPTURA.queue
SCRAPER_QUEUE = Pool.SCRAPER.queue

# Job function names, as registered by the workers.
CANARY = "canary"
RUPTURA_ANALYSE_BATCH = "ruptura_analyse_batch"
SCRAPE_OS = "scrape_os"

# Orders per ruptura job: the seeds' batch size, and the granularity of progress events.
RUPTURA_BATCH_SIZE = 20


class RupturaMode(StrEnum):
    """independent: each order against the projection alone (the seeds' semantics);
    allocated: orders compete for the same stock in priority order."""

    INDEPENDENT = "independent"
    ALLOCATED = "allocated"


class JobPayload(BaseModel):
    """Base of every payload: strict, JSON-only, and versioned by its job name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_kwargs(self) -> dict[str, Any]:
        return {"payload": self.model_dump(mode="json")}

    @classmethod
    def from_kwargs(cls, payload: dict[str, Any]) -> Self:
        return cls.model_validate(payload)


class CanaryPayload(JobPayload):
    """A no-op job every pool serves: proves end to end that a pool consumes its queue."""

    note: str = Field("", max_length=200)


class RupturaBatchPayload(JobPayload):
    """One batch of a ruptura session: up to RUPTURA_BATCH_SIZE order numbers."""

    session_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    batch_index: int = Field(ge=0)
    pedidos: list[str] = Field(min_length=1, max_length=RUPTURA_BATCH_SIZE)
    mode: RupturaMode = RupturaMode.INDEPENDENT
    reference_date: date
    horizon_days: int = Field(28, ge=1, le=366)
    window_days: int = Field(7, ge=0, le=366)
    session_orders: int = Field(1, ge=1, description="Orders in the whole session.")


async def enqueue(
    redis: ArqRedis,
    pool: Pool,
    function: str,
    payload: JobPayload,
    *,
    job_id: str | None = None,
) -> str | None:
    """Put one job on a pool's queue; returns its id, or None when `job_id` is already queued."""
    job = await redis.enqueue_job(
        function, _job_id=job_id, _queue_name=pool.queue, **payload.to_kwargs()
    )
    return None if job is None else job.job_id


class ScrapePayload(JobPayload):
    """One scrape task: the task (already recorded in Redis) and the OS it looks up."""

    task_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    numero_os: str = Field(pattern=r"^[0-9]{1,12}$")


# Many jobs in one round trip, with arq's own record format and enqueue_job's guarantee: a job
# whose id is already queued, or already has a result, is not queued again.
_ENQUEUE_MANY = """
local added = 0
for i = 1, #KEYS, 2 do
  local job_key, result_key = KEYS[i], KEYS[i + 1]
  if redis.call('EXISTS', result_key) == 0
     and redis.call('SET', job_key, ARGV[i + 4], 'PX', ARGV[2], 'NX') then
    redis.call('ZADD', ARGV[1], ARGV[3], ARGV[i + 3])
    added = added + 1
  end
end
return added
"""
_ENQUEUE_CHUNK = 250


async def enqueue_many(
    redis: ArqRedis, pool: Pool, function: str, jobs: Sequence[tuple[str, JobPayload]]
) -> int:
    """Enqueues (job_id, payload) pairs a few hundred per round trip; returns how many were
    new. A session of 1,000 batches is queued in milliseconds instead of 1,000 transactions."""
    added = 0
    for start in range(0, len(jobs), _ENQUEUE_CHUNK):
        chunk = jobs[start : start + _ENQUEUE_CHUNK]
        now_ms = int(time.time() * 1000)
        keys: list[str] = []
        args: list[str | bytes] = [pool.queue, str(redis.expires_extra_ms), str(now_ms)]
        for job_id, payload in chunk:
            keys += [job_key_prefix + job_id, result_key_prefix + job_id]
            record = serialize_job(
                function, (), payload.to_kwargs(), None, now_ms, serializer=serialize_job_record
            )
            args += [job_id, record]
        added += int(await redis.eval(_ENQUEUE_MANY, len(keys), *keys, *args))  # type: ignore[misc, arg-type]
    return added
