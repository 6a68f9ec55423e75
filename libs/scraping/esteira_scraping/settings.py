"""What a scraping process is configured with: a scraper worker, or the gateway (which looks OS
numbers up, and scrapes itself while no worker serves the queue)."""

from __future__ import annotations

from pydantic import Field

from esteira_core.settings import CoreSettings, WorkerPoolSettings
from esteira_scraping.runner import ScrapeLimits


class ScrapingSettings(CoreSettings):
    scrape_soft_limit_seconds: float = Field(
        240, gt=0, description="A scrape stops cleanly between steps after this long."
    )
    scrape_hard_limit_seconds: float = Field(
        300, gt=0, description="After this long the browser's whole process tree is killed."
    )
    scrape_max_retries: int = Field(3, ge=0, description="Retries of a transient failure.")
    scrape_backoff_seconds: float = Field(
        5, gt=0, description="First retry delay; doubles each retry, plus jitter."
    )
    scrape_rate_per_minute: float = Field(
        30, gt=0, description="Portal requests a minute, for all replicas together."
    )
    scrape_rate_burst: int = Field(5, ge=1, description="Requests allowed at once after a pause.")
    scraper_fair_window: int = Field(
        3,
        ge=1,
        description="Scrape jobs in arq's queue (ready or running) per worker online; the rest "
        "wait in the fair queue, where tenants take turns at the portal's tokens.",
    )
    tenant_max_queued_lookups: int = Field(
        200, ge=1, description="Lookups one tenant may have waiting to start (more: 429)."
    )
    browser_max_jobs: int = Field(
        50, ge=1, description="Jobs a pooled browser serves before it is replaced."
    )
    scrape_active_ttl_seconds: int = Field(
        1800,
        ge=60,
        description="Longest a scrape task may stay active; lookups of its OS join it meanwhile.",
    )

    def limits(self) -> ScrapeLimits:
        return ScrapeLimits(
            soft_seconds=self.scrape_soft_limit_seconds,
            hard_seconds=self.scrape_hard_limit_seconds,
            max_retries=self.scrape_max_retries,
            backoff_seconds=self.scrape_backoff_seconds,
            rate_per_minute=self.scrape_rate_per_minute,
            rate_burst=self.scrape_rate_burst,
        )


class ScraperWorkerSettings(ScrapingSettings, WorkerPoolSettings):
    """A scraper worker process: scraping, plus what every worker process needs."""
