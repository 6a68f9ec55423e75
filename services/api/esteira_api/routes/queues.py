"""The queues as the gateway sees them, honestly: what waits, what runs, who serves it, and
whether this gateway sends work to the queue or does it itself (and why)."""

from __future__ import annotations

from fastapi import Request
from pydantic import BaseModel

from esteira_api.auth import authenticated_router
from esteira_api.deps import gateway_of
from esteira_core.jobs import Pool

router = authenticated_router("/api/v1", "queues")


class QueueBody(BaseModel):
    pool: str
    queue: str
    mode: str  # queue | inline
    reason: str  # served | not_served | redis_down
    redis: str  # up | down
    ready: int | None = None
    deferred: int | None = None
    in_progress: int | None = None
    oldest_ready_age_seconds: float | None = None
    workers_online: int | None = None


class QueuesBody(BaseModel):
    queues: list[QueueBody]


@router.get("/queues", summary="Queue depth, age, workers and mode, per queue")
async def queues(request: Request) -> QueuesBody:
    gateway = gateway_of(request)
    bodies = []
    for pool in Pool:
        decision = await gateway.dispatcher.decide(pool, fresh=True)
        # vars(), not dataclasses.asdict: the fields are numbers, and asdict deep-copies them.
        stats = {} if decision.stats is None else vars(decision.stats)
        bodies.append(
            QueueBody.model_validate(
                {
                    **stats,
                    "pool": pool.value,
                    "queue": pool.queue,
                    "mode": decision.mode,
                    "reason": decision.reason,
                    "redis": "down" if decision.stats is None else "up",
                }
            )
        )
    return QueuesBody(queues=bodies)
