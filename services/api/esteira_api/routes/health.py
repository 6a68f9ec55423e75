"""Liveness, readiness and metrics: always open, never behind authentication.

Readiness fails only when the database is unreachable. A Redis outage makes the gateway
`degraded`, not unready: it then serves inline, and taking every replica out of the Service
would turn a Redis outage into a full outage.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from esteira_api.deps import gateway_of
from esteira_core import metrics
from esteira_core.db import ping as ping_database

router = APIRouter(tags=["health"])


async def _check(probe: Any, timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), timeout)
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {timeout:g} s"}
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency is reported, not raised
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


@router.get("/livez", summary="The process is alive")
async def livez() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/readyz", summary="Dependencies reachable", responses={503: {"description": "Not ready"}}
)
async def readyz(request: Request) -> JSONResponse:
    gateway = gateway_of(request)
    timeout = gateway.settings.readiness_timeout_seconds
    redis_check, db_check = await asyncio.gather(
        _check(gateway.redis.ping, timeout),
        _check(lambda: run_in_threadpool(ping_database, gateway.db), timeout),
    )
    if not db_check["ok"]:
        status, code = "not_ready", 503
    elif not redis_check["ok"]:
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    body = {"status": status, "checks": {"redis": redis_check, "database": db_check}}
    return JSONResponse(body, status_code=code)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics_endpoint() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
