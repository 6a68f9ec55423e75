"""The queues as the gateway sees them, honestly: what waits, what runs, who serves it, and
whether this gateway sends work to the queue or does it itself (and why)."""

from __future__ import annotations

from pydantic import BaseModel

from esteira_api.auth import authenticated_router
from esteira_api.deps import GatewayDep
from esteira_core.jobs import Pool

router = authenticated_router("/api/v1", "queues")


class QueueBody(BaseModel):
    pool: str
    queue: str
    mode: str  # queue | inline
    reason: str  # served | not_served | redis_down
    redis: str  # up | down
    ready: int | None
    deferred: int | None
    in_progress: int | None
    oldest_ready_age_seconds: float | None
    workers_online: int | None


class QueuesBody(BaseModel):
    queues: list[QueueBody]


@router.get("/queues", summary="Queue depth, age, workers and mode, per queue")
async def queues(gateway: GatewayDep) -> QueuesBody:
    bodies = []
    for pool in Pool:
        decision = await gateway.health.decide(pool, fresh=True)
        stats = decision.stats
        bodies.append(
            QueueBody(
                pool=pool.value,
                queue=pool.queue,
                mode=decision.mode,
                reason=decision.reason,
                redis="down" if stats is None else "up",
                ready=None if stats is None else stats.ready,
                deferred=None if stats is None else stats.deferred,
                in_progress=None if stats is None else stats.in_progress,
                oldest_ready_age_seconds=None if stats is None else stats.oldest_ready_age_seconds,
                workers_online=None if stats is None else stats.workers_online,
            )
        )
    return QueuesBody(queues=bodies)
