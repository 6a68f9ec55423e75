"""Per queue, per request: send the work to the workers, or do it here (ARCHITECTURE "Health and
fallback").

Queue mode while Redis answers and the queue is served: workers online, jobs in progress, or the
oldest ready job younger than the pool's grace period (so a pool at zero replicas whose first
worker is starting is not a reason to fall back). Inline mode otherwise. A circuit breaker makes
a dead Redis cost one fast failure, then a probe every few seconds; a background loop keeps
probing and keeps the queue gauges fresh, so the return to queue mode is automatic. Every switch
is logged and counted."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from dataclasses import dataclass

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from esteira_api.settings import ApiSettings
from esteira_core import metrics
from esteira_core.breaker import CircuitBreaker, CircuitOpen, State
from esteira_core.jobs import Pool
from esteira_core.queues import QueueStats, queue_stats

logger = logging.getLogger(__name__)

# What a failing Redis raises: refused, reset, timed out, or the breaker saying not to try.
REDIS_ERRORS = (RedisError, OSError, TimeoutError, CircuitOpen)


@dataclass(frozen=True)
class Decision:
    pool: Pool
    mode: str  # queue | inline
    reason: str  # served | redis_down | not_served
    stats: QueueStats | None

    @property
    def inline(self) -> bool:
        return self.mode == "inline"


class QueueHealth:
    def __init__(self, redis: ArqRedis, settings: ApiSettings) -> None:
        self.redis = redis
        self.settings = settings
        self.breaker = CircuitBreaker("redis", settings.redis_breaker_reset_seconds)
        self.grace = {
            Pool.RUPTURA: settings.ruptura_grace_seconds,
            Pool.SCRAPER: settings.scraper_grace_seconds,
        }
        self._checked: dict[Pool, tuple[float, Decision]] = {}
        self._modes: dict[Pool, str] = {}

    def redis_trusted(self) -> bool:
        """True while nothing has seen Redis fail: optional calls (the rate limit) skip it
        otherwise, without taking the breaker's probe."""
        return self.breaker.state is State.CLOSED

    def redis_failed(self) -> None:
        """A request found Redis failing: stop trying until the next probe."""
        self.breaker.failure()
        self._checked.clear()

    async def decide(self, pool: Pool, *, fresh: bool = False) -> Decision:
        now = time.monotonic()
        cached = self._checked.get(pool)
        if not fresh and cached and now - cached[0] < self.settings.queue_check_seconds:
            return cached[1]
        decision = await self._check(pool)
        self._checked[pool] = (now, decision)
        self._record(decision)
        return decision

    async def _check(self, pool: Pool) -> Decision:
        if not self.breaker.allow():
            return Decision(pool, "inline", "redis_down", None)
        try:
            stats = await queue_stats(self.redis, pool, self.settings.heartbeat_interval_seconds)
        except REDIS_ERRORS:
            self.breaker.failure()
            return Decision(pool, "inline", "redis_down", None)
        self.breaker.success()
        # Jobs in progress mean a worker is on the queue even when its heartbeat is late (a
        # worker busy on every core beats late): a slow queue is not an unserved one, and
        # serving it inline would only add the gateway's CPU to the work.
        served = (
            stats.workers_online > 0
            or stats.in_progress > 0
            or stats.oldest_ready_age_seconds <= self.grace[pool]
        )
        return Decision(
            pool, "queue" if served else "inline", "served" if served else "not_served", stats
        )

    def _record(self, decision: Decision) -> None:
        queue = decision.pool.queue
        metrics.QUEUE_MODE.labels(queue).set(0 if decision.inline else 1)
        if decision.stats is not None:
            stats = decision.stats
            metrics.QUEUE_JOBS.labels(queue, "ready").set(stats.ready)
            metrics.QUEUE_JOBS.labels(queue, "deferred").set(stats.deferred)
            metrics.QUEUE_JOBS.labels(queue, "in_progress").set(stats.in_progress)
            metrics.QUEUE_OLDEST_READY_AGE.labels(queue).set(stats.oldest_ready_age_seconds)
            metrics.WORKERS_ONLINE.labels(decision.pool.value).set(stats.workers_online)
        previous = self._modes.get(decision.pool)
        self._modes[decision.pool] = decision.mode
        if previous is not None and previous != decision.mode:
            metrics.QUEUE_MODE_SWITCHES.labels(queue, decision.mode).inc()
            log = logger.warning if decision.inline else logger.info
            log(
                "queue mode changed",
                extra={"queue": queue, "mode": decision.mode, "reason": decision.reason},
            )

    async def watch(self, interval: float = 2.0) -> None:
        """Probes every pool forever (until cancelled): gauges stay fresh, modes switch back."""
        while True:
            for pool in Pool:
                with suppress(Exception):
                    await self.decide(pool, fresh=True)
            await asyncio.sleep(interval)
