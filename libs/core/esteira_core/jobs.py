"""The job contracts between the gateway and the workers: queue names, job names, payloads.

The gateway imports this module, never worker code. A payload travels as one JSON object in the
arq job's `payload` keyword argument and is validated again by the worker. Work for a pool is
submitted through its fair queue (esteira_core.fair); `enqueue` puts one job straight on arq's
queue (a canary).
"""

from __future__ import annotations

from datetime import date
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
RUPTURA_ANALYSE_BATCH = "ruptura_analyse_batch"
SCRAPE_OS = "scrape_os"

# Orders per ruptura batch: the seeds' batch size, and the granularity of results written and
# of progress events.
RUPTURA_BATCH_SIZE = 20
# Batches one ruptura job carries: a worker's cost per job (arq's round trips, the session's
# state, the instrumentation) is most of a small batch's, so a job per batch would cost more in
# queueing than in work; and few enough that a fair-queue window of jobs still holds a
# newcomer back only briefly.
RUPTURA_BATCHES_PER_JOB = 5
# A big session's batches only copy reports judged once for every worker (a fraction of a
# millisecond each), so its jobs carry more of them: arq's cost per job is then a small part
# of a job's, and a window of such jobs is still only tens of milliseconds of work. A draining
# worker stops such a job between two copies (each copies all of the job's batches judged by
# then): it stops only while the job waits for the judge.
RUPTURA_BATCHES_PER_BIG_JOB = 25


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
    """Consecutive batches of a ruptura session: its orders from batch `batch_index` on, each
    RUPTURA_BATCH_SIZE of them a batch (written and announced on its own)."""

    session_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    batch_index: int = Field(ge=0)
    pedidos: list[str] = Field(
        min_length=1, max_length=RUPTURA_BATCH_SIZE * RUPTURA_BATCHES_PER_BIG_JOB
    )
    mode: RupturaMode = RupturaMode.INDEPENDENT
    reference_date: date
    horizon_days: int = Field(28, ge=1, le=366)
    window_days: int = Field(7, ge=0, le=366)
    session_orders: int = Field(1, ge=1, description="Orders in the whole session.")

    def batches(self) -> list[tuple[int, list[str]]]:
        """(batch index, its order numbers) for each batch of the job."""
        size = RUPTURA_BATCH_SIZE
        return [
            (self.batch_index + number, self.pedidos[start : start + size])
            for number, start in enumerate(range(0, len(self.pedidos), size))
        ]


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
