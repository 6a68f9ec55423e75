"""The scraper worker: an arq worker on the scraper queue that drives a pool of headless
Chromium browsers (the scrape flow lives in esteira_scraping; this shell only wires it)."""

from __future__ import annotations

from arq.worker import func

from esteira_core import jobs, worker

DEFAULT_METRICS_PORT = 9102


class WorkerSettings:
    functions = [func(worker.canary, name=jobs.CANARY)]
    queue_name = jobs.SCRAPER_QUEUE
    # One job per pooled browser. The hard limit (300 s) is the job timeout; the pod drains for
    # longer than that: job_timeout < job_completion_wait (320) < terminationGracePeriodSeconds.
    max_jobs = 3
    job_timeout = 300
    job_completion_wait = 320
    max_tries = 4
    keep_result = 300
    poll_delay = 0.2
    health_check_interval = 60


def main() -> None:
    worker.run(WorkerSettings, jobs.Pool.SCRAPER, default_metrics_port=DEFAULT_METRICS_PORT)
