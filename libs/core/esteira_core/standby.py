"""An arq worker run inside another process's event loop: how the gateway serves a queue itself
while no worker does. It is built by the caller (esteira_core.worker.create, with the pool's own
WorkerSettings), runs until stopped, and never touches signals: its host process owns them."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from contextlib import suppress
from typing import Any

from arq.worker import Worker

from esteira_core import worker
from esteira_core.heartbeats import Heartbeat, worker_id
from esteira_core.jobs import Pool
from esteira_core.redis import REDIS_ERRORS, create_redis
from esteira_core.settings import CoreSettings

logger = logging.getLogger(__name__)


class StandbyWorker:
    """Serves `pool`'s queue with the pool's own WorkerSettings and jobs, `max_jobs` at once, its
    jobs finding `shared` in their ctx (and `path` "inline" in their metrics)."""

    def __init__(
        self,
        pool: Pool,
        worker_settings: type,
        settings: CoreSettings,
        *,
        max_jobs: int,
        shared: worker.Ctx,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.pool = pool
        self.name = pool.value
        self.worker_settings = worker_settings
        self.settings = settings
        self.max_jobs = max_jobs
        self.shared = shared
        self.overrides = overrides
        self.member = f"gateway-{worker_id()}"
        self._worker: Worker | None = None
        self._heartbeat: Heartbeat | None = None
        self._run: asyncio.Task[None] | None = None
        self._retiring: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._run is not None and not self._run.done()

    def _build(self) -> Worker:
        """A fresh arq worker for each start (one runs only once), with its own Redis pool
        (closing it closes its pool), without hooks or signals: the host owns both."""
        return worker.create(
            self.worker_settings,
            None,  # no worker-process settings: the pool's own timeouts
            ctx=worker.job_context(self.pool, self.member, "inline", **self.shared),
            max_jobs=self.max_jobs,
            overrides=self.overrides,
            redis_pool=create_redis(self.settings, ride_out=True),
            handle_signals=False,
            on_startup=None,
            on_shutdown=None,
        )

    def start(self) -> None:
        if self.running:
            return
        self._worker = self._build()
        # A context of its own: the request that started it must not lend its id to every job.
        self._run = asyncio.create_task(
            self._serve(self._worker), name=f"standby-{self.name}", context=contextvars.Context()
        )
        logger.warning("serving the queue here: no worker online", extra={"pool": self.name})

    async def _serve(self, standby: Worker) -> None:
        # Alive like a worker (so a dead gateway's jobs are freed as a dead worker's are), but
        # in a set of its own: a gateway is not one of the pool's workers online.
        interval = self.settings.heartbeat_interval_seconds
        worker.hold(standby, standby.ctx, interval)
        self._heartbeat = Heartbeat(
            standby.pool,
            self.name,
            interval,
            member=self.member,
            running=standby.ctx["running_job_ids"],
            standby=True,
        )
        try:
            await self._heartbeat.start()
            await standby.async_run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis lost: stopped; the next start builds a new one
            logger.warning(
                "standby worker stopped", extra={"pool": self.name, "error": type(exc).__name__}
            )

    def retire(self) -> None:
        """A worker is online: finish what runs here, take nothing more (in the background)."""
        if self.running and (self._retiring is None or self._retiring.done()):
            self._retiring = asyncio.create_task(self.stop(hand_back=False))

    async def stop(self, *, hand_back: bool) -> None:
        """Stops taking jobs. `hand_back` (the host is stopping): what runs is cancelled, and arq
        puts it back on the queue at once; otherwise it is finished first."""
        standby, self._worker = self._worker, None
        if standby is None:
            return
        standby.allow_pick_jobs = False
        if not hand_back:
            while any(not task.done() for task in standby.tasks.values()):
                await asyncio.sleep(0.1)
        if self._heartbeat is not None:
            await self._heartbeat.stop()
        with suppress(*REDIS_ERRORS):
            await standby.close()
        if self._run is not None:
            self._run.cancel()
            with suppress(asyncio.CancelledError):
                await self._run
        logger.info("stopped serving the queue here", extra={"pool": self.name})
