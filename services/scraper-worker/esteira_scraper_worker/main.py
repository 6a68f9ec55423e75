"""The scraper worker: an arq worker on the scraper queue with a pool of logged-in headless
Chromium browsers. The pool (its job, its scraper, its settings) is defined in
esteira_scraping.worker; this shell only runs it as a process."""

from __future__ import annotations

from esteira_core import worker
from esteira_core.jobs import Pool
from esteira_scraping.settings import ScraperWorkerSettings
from esteira_scraping.worker import WorkerSettings, timeouts

DEFAULT_METRICS_PORT = 9102


def main() -> None:
    settings = ScraperWorkerSettings()
    worker.run(
        WorkerSettings,
        Pool.SCRAPER,
        default_metrics_port=DEFAULT_METRICS_PORT,
        settings=settings,
        overrides=timeouts(settings),
    )
