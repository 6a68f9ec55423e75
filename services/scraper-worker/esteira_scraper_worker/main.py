"""The scraper worker: an arq worker on the scraper queue with a pool of logged-in headless
Chromium browsers. The scrape lives in esteira_scraping; this shell wires the pool into the
worker's life and turns "try again later" into arq's deferred retry."""

from __future__ import annotations

from typing import Any

from arq.worker import Retry, func

from esteira_core import jobs, worker
from esteira_scraping.flow import ScrapeFlow
from esteira_scraping.pool import BrowserPool
from esteira_scraping.profile import PortalCredentials, load_profile
from esteira_scraping.runner import RetryLater, Scraper
from esteira_scraping.settings import ScraperSettings

DEFAULT_METRICS_PORT = 9102
DEFAULT_CONCURRENCY = 3


@worker.instrumented(jobs.SCRAPE_OS)
async def scrape_os(ctx: worker.Ctx, payload: dict[str, Any]) -> dict[str, Any] | None:
    task = jobs.ScrapePayload.from_kwargs(payload)
    scraper: Scraper = ctx["scraper"]
    try:
        return await scraper.attempt(ctx["redis"], task.task_id, task.numero_os)
    except RetryLater as later:
        raise Retry(defer=later.delay) from later


async def startup(ctx: worker.Ctx) -> None:
    await worker.startup(ctx)
    settings: ScraperSettings = ctx["settings"]
    pool = BrowserPool(ctx["max_jobs"], max_jobs_per_browser=settings.browser_max_jobs)
    flow = ScrapeFlow(load_profile(), PortalCredentials())
    ctx["scraper"] = Scraper(pool, flow, ctx["db"], settings.limits())


async def shutdown(ctx: worker.Ctx) -> None:
    scraper = ctx.pop("scraper", None)
    if scraper is not None:
        await scraper.pool.close()
    await worker.shutdown(ctx)


class WorkerSettings:
    functions = [
        func(scrape_os, name=jobs.SCRAPE_OS),
        func(worker.canary, name=jobs.CANARY),
    ]
    queue_name = jobs.SCRAPER_QUEUE
    on_startup = startup
    on_shutdown = shutdown
    # One job per pooled browser. Our own hard limit (default 300 s) kills a stuck browser first;
    # arq's job_timeout is only the backstop, and the pod drains for longer than either:
    # hard limit < job_timeout (330) < job_completion_wait (340) < terminationGracePeriodSeconds.
    max_jobs = DEFAULT_CONCURRENCY
    job_timeout = 330
    job_completion_wait = 340
    # Retries are counted by the task itself (transient failures only); arq's count also grows
    # with every rate-limit deferral, so its ceiling is only a safety net.
    max_tries = 1000
    keep_result = 300
    poll_delay = 0.2
    health_check_interval = 60


def main() -> None:
    settings = ScraperSettings()
    # A hard limit raised past the defaults moves the backstop and the drain after it.
    job_timeout = max(WorkerSettings.job_timeout, settings.scrape_hard_limit_seconds + 30)
    completion_wait = max(WorkerSettings.job_completion_wait, job_timeout + 10)
    worker.run(
        WorkerSettings,
        jobs.Pool.SCRAPER,
        default_metrics_port=DEFAULT_METRICS_PORT,
        settings=settings,
        overrides={"job_timeout": job_timeout, "job_completion_wait": completion_wait},
    )
