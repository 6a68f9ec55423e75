"""Dependencies shared by the routes, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from arq.connections import ArqRedis
from fastapi import Depends, Request
from sqlalchemy import Engine

from esteira_api.context import Gateway
from esteira_api.settings import ApiSettings, get_settings


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def get_redis(request: Request) -> ArqRedis:
    return get_gateway(request).redis


def get_db(request: Request) -> Engine:
    return get_gateway(request).db


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
GatewayDep = Annotated[Gateway, Depends(get_gateway)]
RedisDep = Annotated[ArqRedis, Depends(get_redis)]
DbDep = Annotated[Engine, Depends(get_db)]
