"""The gateway's side of scraping: a lookup answers from the database when the OS is recorded,
else joins the OS's active scrape or starts one. Routes (v1 and the seed's) adapt these."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arq.connections import ArqRedis
from sqlalchemy import Engine
from starlette.types import Scope

from esteira_api.errors import ApiError
from esteira_api.queue_health import REDIS_ERRORS
from esteira_api.settings import ApiSettings
from esteira_core import jobs, keys, metrics
from esteira_core.queues import QueueStats
from esteira_scraping import tasks
from esteira_scraping.errors import OSNotFound, ScrapeError
from esteira_scraping.flow import ScrapeFlow
from esteira_scraping.persistence import find_os
from esteira_scraping.pool import BrowserPool
from esteira_scraping.profile import PortalCredentials, load_profile
from esteira_scraping.runner import RetryLater, Scraper
from esteira_scraping.settings import ScraperSettings

if TYPE_CHECKING:
    from esteira_api.context import Gateway

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lookup:
    status: str  # found_existing | scraped | queued | in_progress
    numero_os: str
    data: dict[str, Any] | None = None
    task_id: str | None = None
    coalesced: bool = False


class InlineScraper:
    """The gateway's own scraper, for inline mode: a pool of `inline_scrape_limit` browsers,
    started on first use, and a semaphore that bounds what this process takes on."""

    def __init__(self, db: Engine, settings: ApiSettings) -> None:
        self.db = db
        self.settings = settings
        self.slots = asyncio.Semaphore(settings.inline_scrape_limit)
        self._scraper: Scraper | None = None

    @property
    def scraper(self) -> Scraper:
        if self._scraper is None:
            scraper_settings = ScraperSettings()
            pool = BrowserPool(self.settings.inline_scrape_limit, pool_name="gateway")
            flow = ScrapeFlow(load_profile(), PortalCredentials())
            self._scraper = Scraper(pool, flow, self.db, scraper_settings.limits())
        return self._scraper

    def busy(self) -> ApiError | None:
        if not self.slots.locked():
            return None
        return ApiError(
            503,
            "inline_scraping_busy",
            "No scraper worker is available and this gateway is already scraping; try again.",
            headers={"Retry-After": "10"},
        )

    async def run_task(self, redis: ArqRedis, task_id: str, numero_os: str) -> None:
        """A recorded task, run here with the workers' own code, retries included."""
        async with self.slots:
            while True:
                try:
                    await self.scraper.attempt(redis, task_id, numero_os)
                    return
                except RetryLater as later:
                    await asyncio.sleep(later.delay)
                except REDIS_ERRORS:
                    logger.warning(
                        "inline scrape interrupted: Redis failed", extra={"task_id": task_id}
                    )
                    return

    async def scrape_now(self, numero_os: str) -> dict[str, Any]:
        """Redis is down: no task, no coalescing, no global rate limit; just this, bounded."""
        async with self.slots:
            try:
                return await self.scraper.scrape_and_save(numero_os, lambda _stage, _pct: None)
            except OSNotFound as exc:
                raise ApiError(404, "os_not_found", str(exc)) from exc
            except ScrapeError as exc:
                raise ApiError(502, exc.code, f"The portal lookup failed: {exc}") from exc

    async def close(self) -> None:
        if self._scraper is not None:
            await self._scraper.pool.close()


async def lookup(gateway: Gateway, numero_os: str, owner: str) -> Lookup:
    recorded = await asyncio.to_thread(find_os, gateway.db, numero_os)
    if recorded is not None:
        return Lookup("found_existing", numero_os, data=recorded)
    decision = await gateway.health.decide(jobs.Pool.SCRAPER)
    if decision.reason != "redis_down":
        try:
            return await _task(gateway, numero_os, owner, run_here=decision.inline)
        except REDIS_ERRORS:
            gateway.health.redis_failed()
    inline = gateway.inline_scraper
    busy = inline.busy()
    if busy is not None:
        raise busy
    metrics.INLINE_FALLBACKS.labels(jobs.SCRAPER_QUEUE, "redis_down").inc()
    result = await inline.scrape_now(numero_os)
    return Lookup("scraped", numero_os, data=result["data"])


async def _task(gateway: Gateway, numero_os: str, owner: str, *, run_here: bool) -> Lookup:
    redis, settings, inline = gateway.redis, gateway.settings, gateway.inline_scraper
    if run_here and (busy := inline.busy()) is not None:
        raise busy
    joined = await tasks.start_or_join(
        redis, numero_os, owner, active_ttl=settings.scrape_active_ttl_seconds
    )
    if not joined.created:
        task = await tasks.get(redis, joined.task_id)
        status = "queued" if task is None or task["status"] == "queued" else "in_progress"
        return Lookup(status, numero_os, task_id=joined.task_id, coalesced=True)
    if run_here:
        metrics.INLINE_FALLBACKS.labels(jobs.SCRAPER_QUEUE, "not_served").inc()
        gateway.spawn(inline.run_task(redis, joined.task_id, numero_os))
        return Lookup("queued", numero_os, task_id=joined.task_id)
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


async def task_status(redis: ArqRedis, task_id: str, tenant: str) -> dict[str, Any]:
    """A task the tenant started or joined; any other is, to it, a task that does not exist."""
    task = await tasks.get(redis, task_id)
    if task is None or tenant not in task["owners"]:
        raise ApiError(404, "task_not_found", f"Task {task_id} does not exist or expired.")
    return without_owners(task)


async def watch_task(
    gateway: Gateway,
    scope: Scope,
    task_id: str,
    tenant: str,
    *,
    since: float | None,
    wait: float,
) -> dict[str, Any]:
    """The task now if it changed after `since` (its `updated_at` as the client last saw it)
    or has ended; else after its next change, or `wait` seconds. Without `since`, now."""

    def news(task: dict[str, Any]) -> bool:
        return since is None or task["status"] in tasks.ENDED or task["updated_at"] > since

    return await gateway.changes.answer(
        scope,
        keys.scrape_task_events(task_id),
        wait,
        lambda: task_status(gateway.redis, task_id, tenant),
        news,
    )


def without_owners(task: dict[str, Any]) -> dict[str, Any]:
    """What a tenant may see of a task: not who else shares it."""
    return {name: value for name, value in task.items() if name != "owners"}


async def scraper_queue(gateway: Gateway) -> QueueStats | None:
    """The scraper queue now, or None when Redis is down."""
    return (await gateway.health.decide(jobs.Pool.SCRAPER, fresh=True)).stats
