"""One attempt at one scrape task, as a job runs it (and the gateway's inline path too): the
global rate limit (for retries; a first attempt's token was spent when its job was fed), a
pooled browser, the soft and hard time limits, persistence, and the task's
status in Redis at every step. Transient failures come back as `RetryLater` with a backoff
delay; after `max_retries` of them, and at once for final ones (not found, bad credentials),
the task fails with a clear error, as it does when its last allowed attempt began and never
ended (a lookup that takes its worker down each time). Nothing here lets an exception crash
the worker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import Engine

from esteira_core import keys, metrics, ratelimit
from esteira_core.db import DATABASE_ERRORS
from esteira_scraping import tasks
from esteira_scraping.errors import (
    BrowserFailure,
    DatabaseUnavailable,
    HardTimeLimit,
    ScrapeError,
)
from esteira_scraping.flow import Deadline, Progress, ScrapedOS, ScrapeFlow
from esteira_scraping.persistence import SavedOS, save_os
from esteira_scraping.pool import BrowserPool

logger = logging.getLogger(__name__)

# The numbers a service order can have: digits only, so nothing else reaches a browser or a URL.
OS_NUMBER_PATTERN = r"^[0-9]{1,12}$"


@dataclass(frozen=True)
class ScrapeLimits:
    soft_seconds: float = 240
    hard_seconds: float = 300
    max_retries: int = 3
    backoff_seconds: float = 5
    backoff_max_seconds: float = 120
    rate_per_minute: float = 30
    rate_burst: int = 5

    def backoff(self, attempt: int) -> float:
        """Exponential with full jitter on top: base·2^(n−1) + U(0, base), capped."""
        delay = self.backoff_seconds * 2 ** (attempt - 1) + random.uniform(0, self.backoff_seconds)
        return float(min(delay, self.backoff_max_seconds))


def portal_budget(limits: ScrapeLimits, host: str) -> ratelimit.Bucket:
    """The portal's token bucket: one per host, shared by every replica and every tenant."""
    return ratelimit.Bucket(
        keys.rate_limit_bucket(host), limits.rate_per_minute / 60, limits.rate_burst, host
    )


class RetryLater(Exception):
    """Run this task again after `delay` seconds (rate limit, or a transient failure)."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(f"{reason}: again in {delay:.1f} s")
        self.delay = delay
        self.reason = reason


def result_of(scraped: ScrapedOS, saved: SavedOS) -> dict[str, Any]:
    """A successful task's result, in the seed's shape, around the recorded OS."""
    return {
        "status": "success",
        "data": saved.record,
        "cliente_id": saved.cliente_id,
        "equipamento_id": saved.equipamento_id,
        "os_id": saved.os_id,
        "scraped_fields": len(scraped.raw),
    }


# A running task's stages reach its followers at most this often. Each change wakes every client
# following the task (hundreds, for an OS many people ask for at once), and stages a few tens of
# milliseconds apart tell a person nothing; on a slow portal every stage still shows. A task's
# start and end are written at once.
STAGES_EVERY_SECONDS = 0.5


class StageUpdates:
    """A running task's stages (`report`, from any thread), written at most once every
    `every` seconds: a stage reported sooner waits, replaced by any later one; what still
    waits when the attempt ends is dropped (the end says more), and `close` returns only once
    every write has landed, so none lands after the end."""

    def __init__(self, redis: Redis, task_id: str, every: float = STAGES_EVERY_SECONDS):
        self.redis = redis
        self.task_id = task_id
        self.every = every
        self.loop = asyncio.get_running_loop()
        self.written_at = self.loop.time()  # the task's start, just written
        self.waiting: tuple[str, int] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.writes: set[asyncio.Task[bool]] = set()
        self.closed = False

    def report(self, stage: str, percent: int) -> None:
        self.loop.call_soon_threadsafe(self._offer, stage, percent)

    def _offer(self, stage: str, percent: int) -> None:
        if self.closed:
            return
        self.waiting = (stage, percent)
        if self.timer is None:
            self.timer = self.loop.call_at(self.written_at + self.every, self._write)

    def _write(self) -> None:
        self.timer = None
        if self.waiting is None:
            return
        (stage, percent), self.waiting = self.waiting, None
        self.written_at = self.loop.time()
        write = self.loop.create_task(
            tasks.update(self.redis, self.task_id, stage=stage, progress=percent)
        )
        self.writes.add(write)
        write.add_done_callback(self._written)

    def _written(self, write: asyncio.Task[bool]) -> None:
        self.writes.discard(write)
        if not write.cancelled() and write.exception() is not None:
            # Only a stage lost (Redis away); the task's end is written after it.
            logger.warning("stage not written", extra={"task_id": self.task_id})

    async def close(self) -> None:
        self.closed = True
        self.waiting = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        await asyncio.gather(*self.writes, return_exceptions=True)


async def _failed_for_good(
    redis: Redis, task_id: str, numero_os: str, code: str, message: str
) -> None:
    await tasks.finish(
        redis,
        task_id,
        numero_os,
        status="failed",
        stage="failed",
        error={"code": code, "message": message},
    )


class Scraper:
    def __init__(
        self,
        pool: BrowserPool,
        flow: ScrapeFlow,
        engine: Engine,
        limits: ScrapeLimits,
        heartbeat_interval: float = 5.0,
    ):
        self.pool = pool
        self.flow = flow
        self.engine = engine
        self.limits = limits
        self.heartbeat_interval = heartbeat_interval

    async def attempt(
        self, redis: Redis, task_id: str, numero_os: str, runner: str
    ) -> dict[str, Any] | None:
        """Runs the task once as `runner` (a worker's or gateway's heartbeat id); returns its
        result, None when it failed for good or someone alive is already scraping it, or
        raises RetryLater."""
        task = await tasks.get(redis, task_id)
        if task is None or task["status"] in tasks.ENDED:
            return None  # expired, or a duplicate delivery of a finished task
        lease = self.limits.hard_seconds + 30
        if not await tasks.claim(redis, task_id, runner, lease, self.heartbeat_interval):
            return None  # delivered again while its first delivery runs
        try:
            return await self._run(redis, task_id, numero_os, task["attempts"] + 1)
        except (RetryLater, asyncio.CancelledError):
            # Whoever runs it next (maybe another process) must be able to claim it.
            await asyncio.shield(tasks.release(redis, task_id, runner))
            raise

    async def _run(
        self, redis: Redis, task_id: str, numero_os: str, attempt: int
    ) -> dict[str, Any] | None:
        if attempt > self.limits.max_retries + 1:
            # Its last allowed attempt began and never ended (one that failed would have ended
            # the task, one handed back is not counted): its worker died in it, as a lookup
            # that takes its browser and worker down would.
            message = f"The lookup's last allowed attempt ({attempt - 1}) never ended: its worker "
            await _failed_for_good(redis, task_id, numero_os, "abandoned", message + "stopped.")
            return None
        host = self.flow.profile.host
        # A first attempt's portal token was spent when the fair queue fed its job; a retry
        # takes one of its own.
        wait = 0.0
        if attempt > 1:
            budget = portal_budget(self.limits, host)
            wait = await ratelimit.take(redis, budget.key, budget.per_second, budget.burst)
        if wait > 0:
            metrics.RATE_LIMIT_DEFERRALS.labels(host).inc()
            await tasks.update(
                redis, task_id, status="deferred", stage="rate_limited", eta=time.time() + wait
            )
            raise RetryLater(wait, "portal rate limit")
        await tasks.update(
            redis, task_id, status="in_progress", stage="starting", progress=5, attempts=attempt
        )
        stages = StageUpdates(redis, task_id)
        try:
            try:
                result = await self.scrape_and_save(numero_os, stages.report)
            finally:
                await asyncio.shield(stages.close())
        except asyncio.CancelledError:
            # Handed back (a draining gateway or worker): queued again for whoever is alive, and
            # the attempt is not counted.
            await asyncio.shield(
                tasks.update(redis, task_id, status="queued", stage="queued", attempts=attempt - 1)
            )
            raise
        except ScrapeError as exc:
            await self._failed(redis, task_id, numero_os, attempt, exc)
            return None
        except Exception:  # a bug must fail the task, not the worker
            logger.exception("scrape crashed", extra={"task_id": task_id})
            await _failed_for_good(redis, task_id, numero_os, "internal_error", "Internal error.")
            return None
        await tasks.finish(
            redis, task_id, numero_os, status="success", stage="done", progress=100, result=result
        )
        return result

    async def scrape_and_save(self, numero_os: str, progress: Progress) -> dict[str, Any]:
        """The scrape and its recording, with no Redis involved (the gateway's inline path uses
        it directly when Redis is down); raises ScrapeError."""
        scraped = await self._scrape(numero_os, progress)
        started = time.perf_counter()
        progress("saving", 90)
        try:
            saved = await asyncio.to_thread(save_os, self.engine, scraped)
        except DATABASE_ERRORS:  # its text names the server: not kept
            raise DatabaseUnavailable("the database could not record the OS") from None
        metrics.SCRAPE_PHASE_DURATION.labels("persist").observe(time.perf_counter() - started)
        return result_of(scraped, saved)

    async def _scrape(self, numero_os: str, progress: Progress) -> ScrapedOS:
        try:
            async with self.pool.lease() as pooled:
                deadline = Deadline(self.limits.soft_seconds)
                work = asyncio.to_thread(
                    self.flow.lookup, pooled.browser.driver, numero_os, deadline, progress
                )
                try:
                    return await asyncio.wait_for(work, self.limits.hard_seconds)
                except TimeoutError:
                    pooled.kill()
                    raise HardTimeLimit(
                        f"hard time limit of {self.limits.hard_seconds:g} s: browser killed"
                    ) from None
        except ScrapeError:
            raise
        except Exception as exc:  # chromedriver would not start, or died under us
            raise BrowserFailure(f"browser failure: {type(exc).__name__}") from exc

    async def _failed(
        self, redis: Redis, task_id: str, numero_os: str, attempt: int, exc: ScrapeError
    ) -> None:
        error = {"code": exc.code, "message": str(exc)}
        if exc.transient and attempt <= self.limits.max_retries:
            delay = self.limits.backoff(attempt)
            await tasks.update(
                redis,
                task_id,
                status="retrying",
                stage="waiting_retry",
                error=error,
                eta=time.time() + delay,
            )
            raise RetryLater(delay, exc.code) from exc
        await _failed_for_good(redis, task_id, numero_os, exc.code, str(exc))
        return None
