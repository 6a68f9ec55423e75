"""What the gateway holds for its whole life, handed to the routes as one object."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis
from sqlalchemy import Engine

from esteira_api.changes import Changes
from esteira_api.dispatch import Dispatcher
from esteira_api.settings import ApiSettings


@dataclass
class Gateway:
    settings: ApiSettings
    redis: ArqRedis
    db: Engine
    dispatcher: Dispatcher
    changes: Changes

    async def close(self) -> None:
        await self.dispatcher.close()
        await self.redis.aclose()
        self.db.dispose()
