"""A pool of logged-in headless browsers, reused across jobs.

At most `size` browsers (the worker's concurrency). A browser is started lazily, logged in on
first use (and again whenever the portal asks), lent to one job at a time, and recycled after
`max_jobs_per_browser` jobs or after any failure of the browser itself (it crashed, hung, or
timed out), so a browser in a bad state never serves twice. The portal's own answers (not
found, an error page) leave the browser in the pool: starting Chromium costs about as much as
15 warm lookups.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

from esteira_core import metrics
from esteira_scraping.browser import Browser
from esteira_scraping.errors import ScrapeError
from esteira_scraping.processes import kill_tree

logger = logging.getLogger(__name__)


@dataclass
class PooledBrowser:
    browser: Browser
    jobs: int = 0
    broken: str | None = None  # why it must not serve again

    def kill(self) -> None:
        """Kills chromedriver and every Chromium process under it, at once."""
        pid = self.browser.driver_pid
        if pid is not None:
            kill_tree(pid)
        self.broken = self.broken or "killed"


class BrowserPool:
    def __init__(
        self,
        size: int,
        *,
        pool_name: str = "scraper",
        max_jobs_per_browser: int = 50,
        factory: Callable[[], Browser] = Browser,
    ) -> None:
        self.size = size
        self.pool_name = pool_name
        self.max_jobs_per_browser = max_jobs_per_browser
        self.factory = factory
        self._idle: list[PooledBrowser] = []
        self._slots = asyncio.Semaphore(size)
        self._alive = 0
        self._in_use = 0
        self._closed = False
        self._gauges()

    def _gauges(self) -> None:
        metrics.BROWSER_POOL_SIZE.labels(self.pool_name).set(self._alive)
        metrics.BROWSER_POOL_IN_USE.labels(self.pool_name).set(self._in_use)

    @property
    def alive(self) -> int:
        return self._alive

    @property
    def exhausted(self) -> bool:
        """Every browser is lent: a new lease would wait."""
        return self._slots.locked()

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[PooledBrowser]:
        """A browser for one job. Mark it `broken` (or let an exception out) to have it recycled."""
        async with self._slots:
            pooled = self._idle.pop() if self._idle else None
            if pooled is None:
                pooled = PooledBrowser(await asyncio.to_thread(self.factory))
                self._alive += 1
            self._in_use += 1
            self._gauges()
            try:
                yield pooled
            except BaseException as exc:
                if not (isinstance(exc, ScrapeError) and exc.portal_answer):
                    pooled.broken = pooled.broken or type(exc).__name__
                raise
            finally:
                self._in_use -= 1
                pooled.jobs += 1
                await self._give_back(pooled)

    async def _give_back(self, pooled: PooledBrowser) -> None:
        reason = pooled.broken
        if reason is None and pooled.jobs >= self.max_jobs_per_browser:
            reason = "max_jobs"
        if reason is None and not self._closed:
            self._idle.append(pooled)
        else:
            await self._retire(pooled, reason or "closed")
        self._gauges()

    async def _retire(self, pooled: PooledBrowser, reason: str) -> None:
        self._alive -= 1
        metrics.BROWSER_RESTARTS.labels(self.pool_name, reason).inc()
        logger.info("browser retired", extra={"reason": reason, "jobs": pooled.jobs})
        with suppress(Exception):
            if reason == "killed":  # nothing left to talk to: just drop its files
                await asyncio.to_thread(pooled.browser.discard)
            else:
                await asyncio.to_thread(pooled.browser.quit)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for pooled in idle:
            await self._retire(pooled, "closed")
        self._gauges()
