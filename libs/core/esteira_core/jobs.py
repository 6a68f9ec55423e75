"""The job contracts between the gateway and the workers: queue names, job names, payloads.

The gateway imports this module, never worker code. A payload travels as one JSON object in the
arq job's `payload` keyword argument and is validated again by the worker.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self

from arq.connections import ArqRedis
from pydantic import BaseModel, ConfigDict, Field


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
