"""Every Prometheus metric Esteira exports (ARCHITECTURE "Metrics"), defined once.

Each process exports the series it touches: the gateway through its /metrics route, each worker
on its own port. The autoscaling expressions, alert rules and dashboards use only these names.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from esteira_core.jobs import RupturaMode

# Seconds; HTTP answers are fast, jobs are slow (a scrape can take minutes).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0)

# --- gateway --------------------------------------------------------------------------------
HTTP_REQUEST_DURATION = Histogram(
    "esteira_http_request_duration_seconds",
    "Gateway request latency by route template, method and status.",
    ["route", "method", "status"],
    buckets=HTTP_BUCKETS,
)
JOBS_ENQUEUED = Counter(
    "esteira_jobs_enqueued_total", "Jobs put on a queue by the gateway.", ["queue"]
)
REQUESTS_REJECTED = Counter(
    "esteira_requests_rejected_total",
    "Requests and connections refused before any work: no or a wrong key (401), the tenant's "
    "rate or an address's refusals (429), and the gateway's edge (connection caps, head "
    "deadline and size).",
    ["reason"],
)
REDIS_TIMEOUTS_WHILE_LATE = Counter(
    "esteira_redis_timeouts_while_late_total",
    "Redis commands that timed out while this process's event loop ran late: this process was "
    "short of CPU, so they were not counted as Redis failures.",
)
INLINE_FALLBACKS = Counter(
    "esteira_inline_fallbacks_total",
    "Requests served inline by the gateway instead of through a queue.",
    ["queue", "reason"],
)
QUEUE_MODE = Gauge(
    "esteira_queue_mode",
    "1 while the gateway sends a queue's work to its workers, 0 while it serves it inline.",
    ["queue"],
)
QUEUE_MODE_SWITCHES = Counter(
    "esteira_queue_mode_switches_total", "Changes between queue and inline mode.", ["queue", "to"]
)
QUEUE_JOBS = Gauge(
    "esteira_queue_jobs",
    "Jobs on a queue by state (ready, deferred, in_progress).",
    ["queue", "state"],
)
QUEUE_OLDEST_READY_AGE = Gauge(
    "esteira_queue_oldest_ready_age_seconds", "Age of the oldest job ready to run.", ["queue"]
)
WORKERS_ONLINE = Gauge(
    "esteira_workers_online", "Worker processes with a recent heartbeat.", ["pool"]
)

# --- workers --------------------------------------------------------------------------------
JOBS = Counter(
    "esteira_jobs_total", "Jobs finished by a worker, by outcome.", ["queue", "function", "outcome"]
)
JOB_DURATION = Histogram(
    "esteira_job_duration_seconds",
    "Time a job ran in a worker.",
    ["queue", "function"],
    buckets=JOB_BUCKETS,
)
JOB_QUEUE_WAIT = Histogram(
    "esteira_job_queue_wait_seconds",
    "Time from enqueue to start.",
    ["queue"],
    buckets=WAIT_BUCKETS,
)
JOBS_IN_PROGRESS = Gauge("esteira_jobs_in_progress", "Jobs running now in this worker.", ["queue"])
WORKER_CAPACITY = Gauge(
    "esteira_worker_capacity", "Jobs this worker runs at once (its concurrency).", ["queue"]
)
ORDERS_ANALYSED = Counter(
    "esteira_ruptura_orders_analysed_total", "Orders analysed for stock-out.", ["mode", "path"]
)
CARTEIRA_JUDGEMENTS = Counter(
    "esteira_ruptura_carteira_judgements_total",
    "Whole carteiras judged and their reports shared with every worker (once per data version, "
    "horizon and mode).",
    ["mode"],
)
for _mode in RupturaMode:  # every mode's series there (at 0) before the first judgement
    CARTEIRA_JUDGEMENTS.labels(_mode.value)
SCRAPE_PHASE_DURATION = Histogram(
    "esteira_scrape_phase_duration_seconds",
    "Time spent in each phase of a scrape.",
    ["phase"],
    buckets=JOB_BUCKETS,
)
BROWSER_POOL_SIZE = Gauge("esteira_browser_pool_size", "Browsers alive in the pool.", ["pool"])
BROWSER_POOL_IN_USE = Gauge(
    "esteira_browser_pool_in_use", "Browsers lent to a job right now.", ["pool"]
)
BROWSER_RESTARTS = Counter(
    "esteira_browser_restarts_total", "Browsers closed and replaced, by reason.", ["pool", "reason"]
)
RATE_LIMIT_DEFERRALS = Counter(
    "esteira_rate_limit_deferrals_total",
    "Jobs deferred because the portal host's global rate limit was reached.",
    ["host"],
)


def exposition() -> tuple[bytes, str]:
    """The text exposition of this process's metrics and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
