"""Looking an OS up, the use case behind every lookup route: from the database when the OS is
recorded; else by joining the OS's active scrape task or starting one on the scraper queue
(coalescing: one scrape per OS, however many ask); or, while Redis is down, by scraping at once.

They raise esteira_core.errors (the gateway maps each kind to one HTTP status)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import Engine

from esteira_core import fair, jobs, metrics
from esteira_core.db.patience import read_in_thread
from esteira_core.errors import DomainError, NotFound, UpstreamFailed
from esteira_scraping import tasks
from esteira_scraping.errors import OSNotFound, ScrapeError
from esteira_scraping.persistence import find_os
from esteira_scraping.runner import Scraper

logger = logging.getLogger(__name__)

# A tenant over its quota of lookups waiting may try again this much later: the portal's
# budget (30 a minute by default) serves a few of them meanwhile.
QUOTA_RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True)
class Lookup:
    status: str  # found_existing | scraped | queued | in_progress
    numero_os: str
    data: dict[str, Any] | None = None  # the recorded OS (persistence.os_record)
    task_id: str | None = None
    coalesced: bool = False

    @property
    def answered(self) -> bool:
        """The OS is in the answer (recorded, or scraped at once)."""
        return self.data is not None


async def recorded(db: Engine, numero_os: str) -> Lookup | None:
    found = await read_in_thread(db, find_os, db, numero_os)
    return None if found is None else Lookup("found_existing", numero_os, data=found)


async def start_or_join(
    redis: ArqRedis,
    numero_os: str,
    owner: str,
    *,
    active_ttl: int,
    queue: fair.FairQueue,
    max_queued_lookups: int,
) -> Lookup:
    """Joins the OS's active task, or records a new one and submits it to the pool's fair queue
    as the owner's (QuotaExceeded when the owner would have more than `max_queued_lookups`
    lookups waiting; joining a task is never refused)."""
    joined = await tasks.start_or_join(redis, numero_os, owner, active_ttl=active_ttl)
    if not joined.created:
        task = await tasks.get(redis, joined.task_id)
        status = "queued" if task is None or task["status"] == "queued" else "in_progress"
        return Lookup(status, numero_os, task_id=joined.task_id, coalesced=True)
    payload = jobs.ScrapePayload(task_id=joined.task_id, numero_os=numero_os)
    quota = fair.Quota(max_queued_lookups, "lookups", QUOTA_RETRY_AFTER_SECONDS)
    try:
        await fair.submit(
            redis, queue, jobs.SCRAPE_OS, [fair.Job(joined.task_id, payload)], owner, quota
        )
    except Exception as exc:
        # Nothing may wait on a task no worker will ever see.
        error = (
            {"code": exc.code, "message": exc.message}
            if isinstance(exc, DomainError)
            else {"code": "enqueue_failed", "message": "Could not queue the scrape."}
        )
        await tasks.finish(
            redis, joined.task_id, numero_os, status="failed", stage="failed", error=error
        )
        raise
    metrics.JOBS_ENQUEUED.labels(jobs.SCRAPER_QUEUE).inc()
    logger.info("scrape queued", extra={"task_id": joined.task_id, "numero_os": numero_os})
    return Lookup("queued", numero_os, task_id=joined.task_id)


async def scrape_now(scraper: Scraper, numero_os: str) -> Lookup:
    """Redis is down: no task, no coalescing, no global rate limit; the scrape, at once."""
    try:
        result = await scraper.scrape_and_save(numero_os, lambda _stage, _percent: None)
    except OSNotFound as exc:
        raise NotFound("os_not_found", str(exc)) from exc
    except ScrapeError as exc:
        raise UpstreamFailed(exc.code, f"The portal lookup failed: {exc}") from exc
    return Lookup("scraped", numero_os, data=result["data"])
