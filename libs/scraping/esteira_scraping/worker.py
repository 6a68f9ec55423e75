"""The scraper pool: its job, the one constructor of a scraper (browser pool + flow + limits) and
the arq settings it runs with, one definition for every process that serves the queue (the
scraper worker service, and the gateway's standby worker)."""

from __future__ import annotations

from typing import Any

from arq.worker import Retry, func
from sqlalchemy import Engine

from esteira_core import fair, jobs, worker
from esteira_scraping.flow import ScrapeFlow
from esteira_scraping.pool import BrowserPool
from esteira_scraping.profile import PortalCredentials, load_profile
from esteira_scraping.runner import RetryLater, Scraper, portal_budget
from esteira_scraping.settings import ScrapingSettings


def build_scraper(settings: ScrapingSettings, db: Engine, size: int, pool_name: str) -> Scraper:
    """A scraper with a pool of `size` browsers, named `pool_name` in metrics."""
    pool = BrowserPool(size, pool_name=pool_name, max_jobs_per_browser=settings.browser_max_jobs)
    flow = ScrapeFlow(load_profile(), PortalCredentials())
    return Scraper(pool, flow, db, settings.limits(), settings.heartbeat_interval_seconds)


def fair_queue(settings: ScrapingSettings) -> fair.FairQueue:
    """How the pool's fair queue feeds arq's: a scrape takes seconds and feeding after each one
    takes a millisecond, so a worker's default concurrency per worker; and each job fed spends
    a token of the portal's budget, so tenants take turns at the portal too."""
    return fair.FairQueue(
        jobs.Pool.SCRAPER,
        settings.scraper_fair_window,
        settings.heartbeat_interval_seconds,
        portal_budget(settings.limits(), load_profile().host),
    )


@worker.instrumented(jobs.SCRAPE_OS)
async def scrape_os(ctx: worker.Ctx, payload: dict[str, Any]) -> dict[str, Any] | None:
    task = jobs.ScrapePayload.from_kwargs(payload)
    scraper: Scraper = ctx["scraper"]
    try:
        return await scraper.attempt(ctx["redis"], task.task_id, task.numero_os, ctx["worker_id"])
    except RetryLater as later:
        raise Retry(defer=later.delay) from later


async def startup(ctx: worker.Ctx) -> None:
    ctx["fair_queue"] = fair_queue(ctx["settings"])
    await worker.startup(ctx)
    ctx["scraper"] = build_scraper(ctx["settings"], ctx["db"], ctx["max_jobs"], "scraper")


async def shutdown(ctx: worker.Ctx) -> None:
    scraper = ctx.pop("scraper", None)
    if scraper is not None:
        await scraper.pool.close()
    await worker.shutdown(ctx)


def timeouts(settings: ScrapingSettings) -> dict[str, float]:
    """arq's backstop and the drain after it, moved past a hard limit raised above the default:
    hard limit < job_timeout < job_completion_wait < terminationGracePeriodSeconds."""
    job_timeout = max(WorkerSettings.job_timeout, settings.scrape_hard_limit_seconds + 30)
    completion_wait = max(WorkerSettings.job_completion_wait, job_timeout + 10)
    return {"job_timeout": job_timeout, "job_completion_wait": completion_wait}


class WorkerSettings:
    functions = [
        func(scrape_os, name=jobs.SCRAPE_OS),
        func(worker.canary, name=jobs.CANARY),
    ]
    queue_name = jobs.SCRAPER_QUEUE
    on_startup = startup
    on_shutdown = shutdown
    # One job per pooled browser. Our own hard limit (default 300 s) kills a stuck browser first;
    # arq's job_timeout is only the backstop, and the pod drains for longer than either.
    max_jobs = 3
    job_timeout = 330
    job_completion_wait = 340
    # Retries are counted by the task itself (transient failures only); arq's count also grows
    # with every rate-limit deferral, so its ceiling is only a safety net.
    max_tries = 1000
    keep_result = 300
    poll_delay = 0.2
    health_check_interval = 60
