"""The ruptura worker: an arq worker on the ruptura queue. The analysis lives in esteira_ruptura;
this shell parses the payload, calls the library and counts what it did."""

from __future__ import annotations

from typing import Any

from arq.worker import func

from esteira_core import jobs, metrics, worker
from esteira_ruptura.batches import process_batch
from esteira_ruptura.service import SessionCache

DEFAULT_METRICS_PORT = 9101


@worker.instrumented(jobs.RUPTURA_ANALYSE_BATCH)
async def analyse_batch(ctx: worker.Ctx, payload: dict[str, Any]) -> dict[str, Any]:
    batch = jobs.RupturaBatchPayload.from_kwargs(payload)
    stored = await process_batch(ctx["redis"], ctx["db"], ctx["ruptura_sessions"], batch)
    if stored >= 0:
        metrics.ORDERS_ANALYSED.labels(batch.mode.value, "queue").inc(len(batch.pedidos))
    return {"session_id": batch.session_id, "batch": batch.batch_index, "stored": stored}


class WorkerSettings:
    functions = [
        func(analyse_batch, name=jobs.RUPTURA_ANALYSE_BATCH),
        func(worker.canary, name=jobs.CANARY),
    ]
    queue_name = jobs.RUPTURA_QUEUE
    # A batch of 20 orders takes well under a second; a short timeout keeps a job whose worker
    # was killed blocked only briefly (arq holds it until timeout + 10 s), and
    # job_timeout < job_completion_wait < the pod's terminationGracePeriodSeconds (60).
    max_jobs = 8
    job_timeout = 30
    job_completion_wait = 40
    max_tries = 5
    keep_result = 300
    poll_delay = 0.02
    health_check_interval = 60


def main() -> None:
    worker.run(
        WorkerSettings,
        jobs.Pool.RUPTURA,
        default_metrics_port=DEFAULT_METRICS_PORT,
        context={"ruptura_sessions": SessionCache()},
    )
