"""Dependencies shared by the routes, as Annotated aliases.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, and
a thread hop per dependency per request cost more than the rest of a cheap route. They read the
one Gateway the lifespan put on app.state (settings included), so no dependency override is
needed either (FastAPI rebuilds an overridden dependency's signature on every request)."""

from __future__ import annotations

from typing import Annotated

from arq.connections import ArqRedis
from fastapi import Depends, Query, Request
from sqlalchemy import Engine

from esteira_api.changes import MAX_WAIT_SECONDS
from esteira_api.context import Gateway
from esteira_api.settings import ApiSettings
from esteira_ruptura.sources import CarteiraSource


async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def get_settings(request: Request) -> ApiSettings:
    return (await get_gateway(request)).settings


async def get_redis(request: Request) -> ArqRedis:
    return (await get_gateway(request)).redis


async def get_db(request: Request) -> Engine:
    return (await get_gateway(request)).db


async def get_carteira(request: Request) -> CarteiraSource:
    return (await get_gateway(request)).dispatcher.carteira


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
GatewayDep = Annotated[Gateway, Depends(get_gateway)]
RedisDep = Annotated[ArqRedis, Depends(get_redis)]
DbDep = Annotated[Engine, Depends(get_db)]
CarteiraDep = Annotated[CarteiraSource, Depends(get_carteira)]
LongPollWait = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="Seconds the answer may wait for a change (a long poll); 0 answers at once.",
    ),
]
