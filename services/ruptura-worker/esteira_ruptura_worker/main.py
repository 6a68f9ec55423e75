"""The ruptura worker: an arq worker on the ruptura queue. The pool (its job, its settings) is
defined in esteira_ruptura.worker; this shell only runs it as a process."""

from __future__ import annotations

from esteira_core import worker
from esteira_core.jobs import Pool
from esteira_ruptura.settings import RupturaWorkerSettings
from esteira_ruptura.worker import WorkerSettings, shared

DEFAULT_METRICS_PORT = 9101


def main() -> None:
    settings = RupturaWorkerSettings()
    worker.run(
        WorkerSettings,
        Pool.RUPTURA,
        default_metrics_port=DEFAULT_METRICS_PORT,
        settings=settings,
        shared=shared(settings),
    )
