"""Every Redis key Esteira writes, in one place (ARCHITECTURE "Contracts").

Nothing here or elsewhere lists keys with KEYS or SCAN: every key is reached from an id.
"""

from __future__ import annotations

PREFIX = "esteira"

# How long a finished piece of state stays readable; every key gets a TTL.
RUPTURA_SESSION_TTL_SECONDS = 60 * 60
SCRAPE_TASK_TTL_SECONDS = 24 * 60 * 60
# A fair queue's keys live this long after they were last written (each submit and each job
# fed writes them again).
FAIR_QUEUE_TTL_SECONDS = 24 * 60 * 60


def job_handbacks(job_id: str) -> str:
    """Counter: how many times a draining process handed the job back to arq's queue (arq counts
    those runs among the job's tries; esteira_core.worker.tries leaves them out)."""
    return f"{PREFIX}:job:{job_id}:handbacks"


def ruptura_recovery() -> str:
    """The ruptura worker that looks for lost batches this period (see use_cases)."""
    return f"{PREFIX}:ruptura:recovery"


def ruptura_session(session_id: str) -> str:
    """Hash: owner, total, batches, mode, status, created_at."""
    return f"{PREFIX}:ruptura:session:{session_id}"


def ruptura_session_results(session_id: str) -> str:
    """List of result JSON; a client's offset indexes it, progress is its length."""
    return f"{PREFIX}:ruptura:session:{session_id}:results"


def ruptura_session_batches_done(session_id: str) -> str:
    """Set of batch indexes already written: makes a retried batch's write idempotent."""
    return f"{PREFIX}:ruptura:session:{session_id}:batches"


def ruptura_session_events(session_id: str) -> str:
    """Pub/sub channel: one message per finished batch."""
    return f"{PREFIX}:ruptura:session:{session_id}:events"


def ruptura_sessions_open() -> str:
    """Sorted set of the sessions not known to be finished (score: created at): what the
    workers look through for a batch whose write a Redis failover lost."""
    return f"{PREFIX}:ruptura:sessions:open"


def ruptura_order_cache(num_pedido: str, mode: str, version: str) -> str:
    """One order analysed synchronously, cached for a few seconds, under the carteira version
    it was judged on (a load moves every later lookup to new keys)."""
    return f"{PREFIX}:ruptura:order:{mode}:v{version}:{num_pedido}"


def ruptura_judged(mode: str, horizon: str, version: str) -> str:
    """String: the id of the whole carteira judged in `mode` over `horizon` on the data's
    `version`, shared by every worker; while it is being judged, its judge's lease."""
    return f"{PREFIX}:ruptura:judged:{mode}:{horizon}:v{version}"


def ruptura_judged_reports(judged_id: str) -> str:
    """Hash: order number -> its report JSON, as judged once for every session."""
    return f"{PREFIX}:ruptura:judged:{judged_id}:reports"


def ruptura_judged_state(judged_id: str) -> str:
    """Hash: the version asked, its judge (host-pid), and once every report is written,
    complete and the version judged (absent: its judge died)."""
    return f"{PREFIX}:ruptura:judged:{judged_id}:state"


def scrape_task(task_id: str) -> str:
    """Hash: numero_os, status, progress, stage, attempts, result, error, timestamps, and an
    owner:<tenant> field per tenant that started or joined it."""
    return f"{PREFIX}:scrape:task:{task_id}"


def scrape_task_events(task_id: str) -> str:
    """Pub/sub channel: one message per change of the task (what a long poll waits for)."""
    return f"{PREFIX}:scrape:task:{task_id}:events"


# Every change channel, as patterns: a gateway process listens to all of them on one
# connection, whatever the number of requests waiting.
CHANGE_PATTERNS = (ruptura_session_events("*"), scrape_task_events("*"))


def scrape_recent(tenant: str) -> str:
    """List of the latest task ids one tenant started or joined, newest first, capped (what the
    operator page lists)."""
    return f"{PREFIX}:scrape:recent:{tenant}"


def scrape_task_lease(task_id: str) -> str:
    """Who is scraping a task now (a worker or gateway id), so a task delivered twice is
    scraped once; taken over when its holder is no longer alive."""
    return f"{PREFIX}:scrape:task:{task_id}:lease"


def scrape_active_os(numero_os: str) -> str:
    """Task id of the active scrape of one OS (SET NX: request coalescing)."""
    return f"{PREFIX}:scrape:os:{numero_os}"


def workers(pool: str) -> str:
    """Sorted set of worker heartbeats: member = worker id, score = last seen (unix seconds)."""
    return f"{PREFIX}:workers:{pool}"


def standby_workers(pool: str) -> str:
    """Sorted set of the gateways serving a pool's queue themselves (standby workers): alive
    like workers, but not counted as the pool's workers online."""
    return f"{PREFIX}:workers:{pool}:standby"


def workers_busy(pool: str) -> str:
    """Hash: worker id -> jobs it was running at its last heartbeat."""
    return f"{PREFIX}:workers:{pool}:busy"


def rate_limit_bucket(host: str) -> str:
    """Token bucket of one portal host, shared by every scraper replica."""
    return f"{PREFIX}:ratelimit:{host}"


def tenant_rate_bucket(tenant: str) -> str:
    """Token bucket of one tenant's requests, shared by every gateway replica."""
    return f"{PREFIX}:tenant-rate:{tenant}"


def fair_queue(pool: str) -> str:
    """Hash of a pool's fair queue: `clock` (the virtual time of the last tenant served), `jobs`
    (jobs waiting), and per tenant `jobs:<tenant>` and `units:<tenant>` (orders or lookups)."""
    return f"{PREFIX}:fair:{pool}"


def fair_places(pool: str) -> str:
    """Hash of the jobs a pool's fair queue fed that take more than one place in arq's window:
    job id -> places (see esteira_core.fair); pruned of jobs arq no longer holds."""
    return f"{PREFIX}:fair:{pool}:places"


def fair_tenants(pool: str) -> str:
    """Sorted set of the tenants with jobs waiting in a pool's fair queue, scored by the virtual
    time of their next turn (round robin)."""
    return f"{PREFIX}:fair:{pool}:tenants"


def fair_waiting(pool: str, tenant: str) -> str:
    """List of one tenant's jobs waiting in a pool's fair queue, oldest first: each entry is
    `<units> <job id> <arq job record>`."""
    return f"{PREFIX}:fair:{pool}:waiting:{tenant}"
