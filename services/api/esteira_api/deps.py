"""Dependencies shared by the routes, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from arq.connections import ArqRedis
from fastapi import Depends, Request
from sqlalchemy import Engine

from esteira_api.settings import ApiSettings, get_settings


def get_redis(request: Request) -> ArqRedis:
    redis: ArqRedis = request.app.state.redis
    return redis


def get_db(request: Request) -> Engine:
    engine: Engine = request.app.state.db
    return engine


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
RedisDep = Annotated[ArqRedis, Depends(get_redis)]
DbDep = Annotated[Engine, Depends(get_db)]
