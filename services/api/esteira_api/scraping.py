"""The gateway's side of scraping: a lookup answers from the database when the OS is recorded,
else joins the OS's active scrape or starts one. Routes (v1 and the seed's) adapt these."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import Engine

from esteira_api.errors import ApiError
from esteira_api.settings import ApiSettings
from esteira_core import jobs, metrics
from esteira_core.queues import QueueStats, queue_stats
from esteira_scraping import tasks
from esteira_scraping.persistence import find_os

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lookup:
    status: str  # found_existing | queued | in_progress
    numero_os: str
    data: dict[str, Any] | None = None
    task_id: str | None = None
    coalesced: bool = False


async def lookup(
    redis: ArqRedis, db: Engine, settings: ApiSettings, numero_os: str, owner: str
) -> Lookup:
    recorded = await asyncio.to_thread(find_os, db, numero_os)
    if recorded is not None:
        return Lookup("found_existing", numero_os, data=recorded)
    joined = await tasks.start_or_join(
        redis, numero_os, owner, active_ttl=settings.scrape_active_ttl_seconds
    )
    if not joined.created:
        task = await tasks.get(redis, joined.task_id)
        status = "queued" if task is None or task["status"] == "queued" else "in_progress"
        return Lookup(status, numero_os, task_id=joined.task_id, coalesced=True)
    payload = jobs.ScrapePayload(task_id=joined.task_id, numero_os=numero_os)
    try:
        await jobs.enqueue(redis, jobs.Pool.SCRAPER, jobs.SCRAPE_OS, payload, job_id=joined.task_id)
    except Exception:
        # Nothing may wait on a task no worker will ever see.
        await tasks.finish(
            redis,
            joined.task_id,
            numero_os,
            status="failed",
            stage="failed",
            error={"code": "enqueue_failed", "message": "Could not queue the scrape."},
        )
        raise
    metrics.JOBS_ENQUEUED.labels(jobs.SCRAPER_QUEUE).inc()
    logger.info("scrape queued", extra={"task_id": joined.task_id, "numero_os": numero_os})
    return Lookup("queued", numero_os, task_id=joined.task_id)


async def task_status(redis: ArqRedis, task_id: str) -> dict[str, Any]:
    task = await tasks.get(redis, task_id)
    if task is None:
        raise ApiError(404, "task_not_found", f"Task {task_id} does not exist or expired.")
    task.pop("owner", None)
    return task


async def scraper_queue(redis: ArqRedis, settings: ApiSettings) -> QueueStats:
    return await queue_stats(redis, jobs.Pool.SCRAPER, settings.heartbeat_interval_seconds)
