"""What the gateway holds for its whole life, handed to the services as one object."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arq.connections import ArqRedis
from sqlalchemy import Engine

from esteira_api.changes import Changes
from esteira_api.queue_health import QueueHealth
from esteira_api.settings import ApiSettings

if TYPE_CHECKING:
    from esteira_api.scraping import InlineScraper


@dataclass
class Gateway:
    settings: ApiSettings
    redis: ArqRedis
    db: Engine
    health: QueueHealth
    changes: Changes
    inline_scraper: InlineScraper
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs inline work after the answer; kept referenced, cancelled at shutdown."""
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        await self.inline_scraper.close()
        await self.redis.aclose()
        self.db.dispose()
