"""The ruptura worker: an arq worker on the ruptura queue (its job functions live in
esteira_ruptura; this shell only wires them)."""

from __future__ import annotations

from arq.worker import func
from esteira_core import jobs, worker

DEFAULT_METRICS_PORT = 9101


class WorkerSettings:
    functions = [func(worker.canary, name=jobs.CANARY)]
    queue_name = jobs.RUPTURA_QUEUE
    # A batch of 20 orders takes well under a second; a short timeout keeps a job whose worker
    # was killed blocked only briefly (arq holds it until timeout + 10 s), and
    # job_timeout < job_completion_wait < the pod's terminationGracePeriodSeconds (60).
    max_jobs = 4
    job_timeout = 30
    job_completion_wait = 40
    max_tries = 5
    keep_result = 300
    poll_delay = 0.1
    health_check_interval = 60


def main() -> None:
    worker.run(WorkerSettings, jobs.Pool.RUPTURA, default_metrics_port=DEFAULT_METRICS_PORT)
