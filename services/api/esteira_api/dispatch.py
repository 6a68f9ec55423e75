"""The one dispatcher: per queue, per request, where the work goes (ARCHITECTURE "Health and
fallback").

- Redis answers: the work is recorded and queued, always, so it outlives this process. The
  queue is served by the pool's workers; while none is online and the oldest ready job is older
  than the pool's grace period (which covers a pool scaling from zero), this gateway serves the
  queue itself with a standby worker running the pool's own job code. Jobs it has not finished
  stay on the queue: on SIGTERM it cancels what it runs (arq puts it back), on SIGKILL arq's
  in-progress key expires; either way whoever is alive next (a worker, another replica, this
  gateway restarted) takes them, and every write being idempotent, each order counts once.
- Redis is down: the work is done in the request (all of a ruptura session's results in the
  answer; a scrape bounded by the gateway's browsers), as nothing could be recorded anyway.

A circuit breaker makes a dead Redis cost one fast failure, then a probe every few seconds. A
timeout while this process's own event loop ran late is not blamed on Redis
(esteira_core.loopwatch): the request gets a 503 busy, and the work stays on the queue instead
of coming inline onto a process already short of CPU. A background loop keeps probing, keeps
the queue gauges fresh, starts a standby worker for a queue nobody serves (so work queued during
the grace is not stranded) and stops it once a worker is online. Every switch is logged and
counted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import date

from arq.connections import ArqRedis
from prometheus_client import Gauge
from sqlalchemy import Engine

from esteira_api.settings import ApiSettings
from esteira_core import fair, metrics
from esteira_core.breaker import CircuitBreaker, State
from esteira_core.errors import Busy
from esteira_core.jobs import Pool, RupturaMode
from esteira_core.loopwatch import LoopWatch
from esteira_core.queues import QueueStats, queue_stats
from esteira_core.redis import REDIS_ERRORS, TIMEOUTS
from esteira_core.standby import StandbyWorker
from esteira_ruptura import sources, use_cases
from esteira_ruptura import worker as ruptura_pool
from esteira_scraping import lookups
from esteira_scraping import worker as scraper_pool
from esteira_scraping.lookups import Lookup

logger = logging.getLogger(__name__)


def too_busy() -> Busy:
    """What a request gets when this process, not Redis, was too slow (Dispatcher.blame_redis)."""
    return Busy("gateway_busy", "This gateway is too busy to answer now; try again.", retry_after=1)


@dataclass(frozen=True)
class Decision:
    pool: Pool
    mode: str  # queue | inline
    reason: str  # served | redis_down | not_served
    stats: QueueStats | None

    @property
    def inline(self) -> bool:
        return self.mode == "inline"


@dataclass(frozen=True)
class QueueGauges:
    """A queue's gauge series, looked up once: a decision is recorded on every fresh check (each
    /api/v1/queues request among them), and a labels() call per gauge each time showed up in
    the gateway's CPU per request."""

    mode: Gauge
    ready: Gauge
    deferred: Gauge
    in_progress: Gauge
    oldest_ready_age: Gauge
    workers_online: Gauge

    @classmethod
    def of(cls, pool: Pool) -> QueueGauges:
        queue = pool.queue
        return cls(
            mode=metrics.QUEUE_MODE.labels(queue),
            ready=metrics.QUEUE_JOBS.labels(queue, "ready"),
            deferred=metrics.QUEUE_JOBS.labels(queue, "deferred"),
            in_progress=metrics.QUEUE_JOBS.labels(queue, "in_progress"),
            oldest_ready_age=metrics.QUEUE_OLDEST_READY_AGE.labels(queue),
            workers_online=metrics.WORKERS_ONLINE.labels(pool.value),
        )


class Dispatcher:
    def __init__(self, redis: ArqRedis, db: Engine, settings: ApiSettings) -> None:
        self.redis = redis
        self.db = db
        self.settings = settings
        self.breaker = CircuitBreaker("redis", settings.redis_breaker_reset_seconds)
        self.loop_watch = LoopWatch()
        self.grace = {
            Pool.RUPTURA: settings.ruptura_grace_seconds,
            Pool.SCRAPER: settings.scraper_grace_seconds,
        }
        # Where ruptura reads the carteira: for its standby worker, its routes and Redis-down
        # sessions alike.
        self.carteira = sources.configured(
            settings, db, lock_timeout_seconds=settings.database_lock_timeout_seconds
        )
        # The gateway's browsers: its standby scraper's and the Redis-down lookups' alike.
        self.scraper = scraper_pool.build_scraper(
            settings, db, settings.inline_scrape_limit, "gateway"
        )
        self.fair = {
            Pool.RUPTURA: ruptura_pool.fair_queue(settings),
            Pool.SCRAPER: scraper_pool.fair_queue(settings),
        }
        self.standbys = {
            Pool.RUPTURA: StandbyWorker(
                Pool.RUPTURA,
                ruptura_pool.WorkerSettings,
                settings,
                max_jobs=settings.inline_ruptura_jobs,
                shared={"db": db, "carteira": self.carteira, **ruptura_pool.shared(settings)},
            ),
            Pool.SCRAPER: StandbyWorker(
                Pool.SCRAPER,
                scraper_pool.WorkerSettings,
                settings,
                max_jobs=settings.inline_scrape_limit,
                shared={"db": db, "scraper": self.scraper, "fair_queue": self.fair[Pool.SCRAPER]},
                overrides=scraper_pool.timeouts(settings),
            ),
        }
        self._gauges = {pool: QueueGauges.of(pool) for pool in Pool}
        self._checked: dict[Pool, tuple[float, Decision]] = {}
        self._modes: dict[Pool, str] = {}

    def redis_trusted(self) -> bool:
        """True while nothing has seen Redis fail: optional calls (the rate limit) skip it
        otherwise, without taking the breaker's probe."""
        return self.breaker.state is State.CLOSED

    def blame_redis(self, error: BaseException) -> bool:
        """A request found Redis failing: no more tries until the breaker's probe, and the
        queue checks start over. Unless it was a timeout while this process's loop ran late by
        half the Redis timeout or more: the answer may well have been there, unread; False,
        and nothing changes."""
        timeout = self.settings.redis_timeout_seconds
        if isinstance(error, TIMEOUTS) and self.loop_watch.late_seconds(2 * timeout) >= timeout / 2:
            metrics.REDIS_TIMEOUTS_WHILE_LATE.inc()
            return False
        self.breaker.failure()
        self._checked.clear()
        return True

    def redis_failed(self, error: BaseException) -> None:
        """A request that needs Redis found it failing (see blame_redis); Busy when this
        process, not Redis, was too slow."""
        if not self.blame_redis(error):
            raise too_busy() from error

    async def decide(self, pool: Pool, *, fresh: bool = False) -> Decision:
        now = time.monotonic()
        cached = self._checked.get(pool)
        if not fresh and cached and now - cached[0] < self.settings.queue_check_seconds:
            return cached[1]
        decision = await self._check(pool)
        self._checked[pool] = (now, decision)
        self._record(decision)
        return decision

    async def workers_online(self, pool: Pool) -> int:
        """The pool's workers online as the last queue check saw them (at most
        `queue_check_seconds` ago): what a session's status shows, without a Redis round trip
        of its own on every poll."""
        stats = (await self.decide(pool)).stats
        return 0 if stats is None else stats.workers_online

    async def _check(self, pool: Pool) -> Decision:
        if not self.breaker.allow():
            return Decision(pool, "inline", "redis_down", None)
        try:
            stats = await queue_stats(self.redis, pool, self.settings.heartbeat_interval_seconds)
        except REDIS_ERRORS as error:
            if self.blame_redis(error):
                return Decision(pool, "inline", "redis_down", None)
            # Too late to tell: the last decision holds (a first one trusts the queue: a
            # submission that finds Redis down then blames it).
            previous = self._checked.get(pool)
            return previous[1] if previous else Decision(pool, "queue", "served", None)
        self.breaker.success()
        # Jobs in progress mean a worker is on the queue even when its heartbeat is late (a
        # worker busy on every core beats late): a slow queue is not an unserved one.
        standby = self.standbys[pool]
        served = stats.workers_online > 0 or stats.in_progress > 0
        if not served and not standby.running:
            served = stats.oldest_ready_age_seconds <= self.grace[pool]
        if stats.workers_online > 0:
            standby.retire()
        elif not served:
            standby.start()
        return Decision(
            pool, "queue" if served else "inline", "served" if served else "not_served", stats
        )

    def _record(self, decision: Decision) -> None:
        queue = decision.pool.queue
        gauges = self._gauges[decision.pool]
        gauges.mode.set(0 if decision.inline else 1)
        if decision.stats is not None:
            stats = decision.stats
            gauges.ready.set(stats.ready)
            gauges.deferred.set(stats.deferred)
            gauges.in_progress.set(stats.in_progress)
            gauges.oldest_ready_age.set(stats.oldest_ready_age_seconds)
            gauges.workers_online.set(stats.workers_online)
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
        """Probes every pool forever (until cancelled): gauges stay fresh, modes switch back;
        and feeds every pool's fair queue meanwhile (so waiting work moves on even while no
        job ends: a new token, a worker come back)."""
        feeders = [
            fair.Feeder(self.redis, queue, self.settings.heartbeat_interval_seconds)
            for queue in self.fair.values()
        ]
        for feeder in feeders:
            feeder.start()
        ticking = asyncio.create_task(self.loop_watch.run(), name="loop-watch")
        try:
            while True:
                for pool in Pool:
                    with suppress(Exception):
                        await self.decide(pool, fresh=True)
                await asyncio.sleep(interval)
        finally:
            ticking.cancel()
            for feeder in feeders:
                await feeder.stop()

    async def start_session(
        self,
        order_numbers: Sequence[str] | None,
        mode: RupturaMode,
        reference_date: date | None,
        owner: str,
    ) -> use_cases.SessionStarted | use_cases.InlineAnswer:
        """The orders asked for (None: every active one), checked, then a recorded, queued
        session; or, while Redis is down, every result at once."""
        wanted = await use_cases.wanted_orders(self.carteira, self.settings, order_numbers)
        horizon = self.settings.horizon(reference_date)
        decision = await self.decide(Pool.RUPTURA)
        if decision.reason != "redis_down":
            if decision.inline:
                metrics.INLINE_FALLBACKS.labels(Pool.RUPTURA.queue, "not_served").inc()
            try:
                return await use_cases.start_session(
                    self.redis,
                    wanted,
                    mode,
                    horizon,
                    owner=owner,
                    path=decision.mode,
                    queue=self.fair[Pool.RUPTURA],
                    max_queued_orders=self.settings.tenant_max_queued_orders,
                )
            except REDIS_ERRORS as error:
                self.redis_failed(error)
        metrics.INLINE_FALLBACKS.labels(Pool.RUPTURA.queue, "redis_down").inc()
        return await use_cases.analyse_now(self.carteira, wanted, mode, horizon)

    async def lookup(self, numero_os: str, owner: str) -> Lookup:
        """The recorded OS; else its scrape task, joined or queued; or, while Redis is down,
        the OS scraped at once by this gateway's browsers (503 when they are all busy)."""
        found = await lookups.recorded(self.db, numero_os)
        if found is not None:
            return found
        decision = await self.decide(Pool.SCRAPER)
        if decision.reason != "redis_down":
            if decision.inline:
                metrics.INLINE_FALLBACKS.labels(Pool.SCRAPER.queue, "not_served").inc()
            try:
                return await lookups.start_or_join(
                    self.redis,
                    numero_os,
                    owner,
                    active_ttl=self.settings.scrape_active_ttl_seconds,
                    queue=self.fair[Pool.SCRAPER],
                    max_queued_lookups=self.settings.tenant_max_queued_lookups,
                )
            except REDIS_ERRORS as error:
                self.redis_failed(error)
        if self.scraper.pool.exhausted:
            raise Busy(
                "inline_scraping_busy",
                "No scraper worker is available and this gateway is already scraping; try again.",
                retry_after=10,
            )
        metrics.INLINE_FALLBACKS.labels(Pool.SCRAPER.queue, "redis_down").inc()
        return await lookups.scrape_now(self.scraper, numero_os)

    async def close(self) -> None:
        """SIGTERM: hands back what the standby workers run, then closes the browsers."""
        for standby in self.standbys.values():
            await standby.stop(hand_back=True)
        await self.scraper.pool.close()
        self.carteira.close()
