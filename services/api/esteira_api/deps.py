"""Dependencies shared by the routes, as Annotated aliases."""

from __future__ import annotations

import asyncio
from typing import Annotated

from arq.connections import ArqRedis
from fastapi import Depends, Request
from sqlalchemy import Engine

from esteira_api.queue_health import QueueHealth
from esteira_api.scraping import InlineScraper
from esteira_api.settings import ApiSettings, get_settings


def get_redis(request: Request) -> ArqRedis:
    redis: ArqRedis = request.app.state.redis
    return redis


def get_db(request: Request) -> Engine:
    engine: Engine = request.app.state.db
    return engine


def get_health(request: Request) -> QueueHealth:
    health: QueueHealth = request.app.state.health
    return health


def get_background(request: Request) -> set[asyncio.Task[None]]:
    """Where inline work started by a request is kept alive (and cancelled at shutdown)."""
    tasks: set[asyncio.Task[None]] = request.app.state.background
    return tasks


def get_inline_scraper(request: Request) -> InlineScraper:
    scraper: InlineScraper = request.app.state.inline_scraper
    return scraper


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
RedisDep = Annotated[ArqRedis, Depends(get_redis)]
DbDep = Annotated[Engine, Depends(get_db)]
HealthDep = Annotated[QueueHealth, Depends(get_health)]
BackgroundDep = Annotated[set[asyncio.Task[None]], Depends(get_background)]
InlineScraperDep = Annotated[InlineScraper, Depends(get_inline_scraper)]
