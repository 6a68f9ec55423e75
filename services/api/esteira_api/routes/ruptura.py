"""Ruptura API v1: sessions analysed by the ruptura workers, and one order analysed at once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import date
from typing import Annotated, Any

from fastapi import Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, model_validator

from esteira_api.auth import authenticated_router, tenant_of
from esteira_api.context import Gateway
from esteira_api.deps import LongPollWait, gateway_of
from esteira_api.responses import json_with_documents, model_json
from esteira_core import keys
from esteira_core.jobs import Pool, RupturaMode
from esteira_core.redis import REDIS_ERRORS
from esteira_ruptura import sessions, use_cases
from esteira_ruptura.models import (
    ORDER_NUMBER_MAX_LENGTH,
    ORDER_NUMBER_PATTERN,
    OrderNumber,
    OrderReport,
)

router = authenticated_router("/api/v1/ruptura", "ruptura", 400, 404, 413)

OrderNumberPath = Annotated[
    str, Path(min_length=1, max_length=ORDER_NUMBER_MAX_LENGTH, pattern=ORDER_NUMBER_PATTERN)
]
SessionId = Annotated[
    str, Path(pattern=r"^[0-9a-f]{32}$", description="The id a session was started with.")
]


class SessionRequest(BaseModel):
    pedidos: list[OrderNumber] | None = Field(
        None, description="Order numbers to analyse (duplicates are analysed once)."
    )
    all: bool = Field(False, description="Analyse every active order of the carteira instead.")
    mode: RupturaMode = RupturaMode.INDEPENDENT
    reference_date: date | None = Field(
        None, description="Day 0 of the projection (default: today in ESTEIRA_TIMEZONE)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> SessionRequest:
        if self.all == (self.pedidos is not None):
            raise ValueError("send either pedidos (a list) or all: true")
        return self


class SessionStartedBody(BaseModel):
    session_id: str
    total: int
    batches: int
    mode: RupturaMode
    reference_date: date
    status_url: str
    results_url: str
    events_url: str


class SessionStatusBody(BaseModel):
    session_id: str
    status: str
    mode: RupturaMode
    total: int
    processed: int
    percent: float
    done: bool
    batches: int
    reference_date: date
    workers_online: int


class ResultsBody(BaseModel):
    session_id: str
    offset: int
    next_offset: int
    processed: int
    total: int
    done: bool
    results: list[dict[str, Any]]


class InlineResultsBody(BaseModel):
    mode: str = "inline"
    analysis_mode: RupturaMode
    total: int
    reference_date: date
    done: bool = True
    results: list[dict[str, Any]]


@router.post(
    "/sessions",
    status_code=202,
    summary="Start analysing orders",
    response_model=SessionStartedBody,
    responses={
        200: {
            "model": InlineResultsBody,
            "description": "Redis is down: the gateway analysed the orders itself, all at once.",
        }
    },
)
async def start_session(
    body: SessionRequest, request: Request
) -> SessionStartedBody | JSONResponse:
    gateway, tenant = gateway_of(request), tenant_of(request)
    started = await gateway.dispatcher.start_session(
        body.pedidos, body.mode, body.reference_date, tenant
    )
    if isinstance(started, use_cases.InlineAnswer):
        inline = InlineResultsBody(
            analysis_mode=started.mode,
            total=started.total,
            reference_date=started.reference_date,
            results=started.results,
        )
        return JSONResponse(inline.model_dump(mode="json"), status_code=200)
    base = f"/api/v1/ruptura/sessions/{started.session_id}"
    return SessionStartedBody(
        session_id=started.session_id,
        total=started.total,
        batches=started.batches,
        mode=started.mode,
        reference_date=started.reference_date,
        status_url=base,
        results_url=f"{base}/results?offset=0",
        events_url=f"{base}/events",
    )


@router.get(
    "/sessions/{session_id}",
    summary="A session's status and progress",
    response_model=SessionStatusBody,
)
async def session_status(session_id: SessionId, request: Request) -> Response:
    gateway, tenant = gateway_of(request), tenant_of(request)
    info = await sessions.owned(gateway.redis, session_id, tenant)
    body = SessionStatusBody(
        session_id=session_id,
        status=info.status,
        mode=info.mode,
        total=info.total,
        processed=info.processed,
        percent=info.percent,
        done=info.done,
        batches=info.batches,
        reference_date=info.reference_date,
        workers_online=await gateway.dispatcher.workers_online(Pool.RUPTURA),
    )
    return model_json(body)


Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Results already read.")]
Limit = Annotated[int, Query(ge=1, le=5000, description="Most results in one answer.")]


@router.get(
    "/sessions/{session_id}/results",
    summary="Results stored since an offset",
    response_model=ResultsBody,
    description=(
        "`done` is true once the session is finished and every result has been read. With"
        " `wait`, a long poll: when there is nothing new after `offset` and the session is"
        " not finished, the answer waits for its next batch, at most `wait` seconds (the"
        " `Server-Timing` header says how long it waited)."
    ),
)
async def session_results(
    session_id: SessionId,
    request: Request,
    offset: Offset = 0,
    limit: Limit = 2000,
    wait: LongPollWait = 0,
) -> Response:
    gateway, tenant = gateway_of(request), tenant_of(request)
    # The results from `offset` now if there are any or the session is finished; else after
    # the session's next batch, or `wait` seconds.
    page = await gateway.changes.answer(
        request.scope,
        keys.ruptura_session_events(session_id),
        wait,
        lambda: sessions.results_since(gateway.redis, session_id, tenant, offset, limit),
        lambda page: bool(page.results) or page.info.done,
    )
    envelope = {
        "session_id": session_id,
        "offset": offset,
        "next_offset": page.next_offset,
        "processed": page.info.processed,
        "total": page.info.total,
        "done": page.done,
    }
    return json_with_documents(envelope, "results", page.results)


@router.get(
    "/sessions/{session_id}/events",
    summary="Progress as server-sent events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def session_events(session_id: SessionId, request: Request) -> StreamingResponse:
    gateway, tenant = gateway_of(request), tenant_of(request)
    await sessions.owned(gateway.redis, session_id, tenant)  # a 404 before the stream
    return StreamingResponse(
        progress_events(gateway, session_id, tenant),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


NO_LISTENER_POLL_SECONDS = 1.0


def _progress_event(info: sessions.SessionInfo) -> str:
    body = {"processed": info.processed, "total": info.total, "done": info.done}
    return f"event: progress\ndata: {json.dumps(body)}\n\n"


async def progress_events(
    gateway: Gateway, session_id: str, tenant: str, keepalive_seconds: float = 15
) -> AsyncIterator[str]:
    """Server-sent events: the progress now, then the progress after each change (one per batch,
    or one for several that finished together) until the session is done. Woken by the
    gateway's change listener, so a stream holds no Redis connection of its own; watching
    starts before the first read, so no batch finished in between is missed. A Redis outage
    (a restart, a failover) does not end the stream: it goes on once Redis answers."""
    redis = gateway.redis
    # Bounded, so a rollout never waits on a stream: past the bound it ends with a `retry`
    # hint, and the browser's EventSource reconnects and gets the progress as it is then.
    ends = time.monotonic() + gateway.settings.event_stream_max_seconds
    with gateway.changes.watching(keys.ruptura_session_events(session_id)) as changed:
        info = await sessions.owned(redis, session_id, tenant)
        yield _progress_event(info)
        while not info.done:
            if time.monotonic() >= ends:
                yield "retry: 1000\nevent: reconnect\ndata: {}\n\n"
                return
            # Without the listener (Redis lost, or not subscribed yet) look again each second.
            quiet = keepalive_seconds if gateway.changes.listening else NO_LISTENER_POLL_SECONDS
            with suppress(TimeoutError):
                async with asyncio.timeout(min(quiet, ends - time.monotonic())):
                    await changed.wait()
            woken = changed.is_set()
            changed.clear()
            try:
                found = await sessions.info(redis, session_id)
            except REDIS_ERRORS:
                # Redis restarting or failing over: the stream stays, and carries on from
                # where the session is once Redis answers again.
                yield ": redis unavailable, retrying\n\n"
                continue
            if found is None:
                yield 'event: gone\ndata: {"reason": "session deleted or expired"}\n\n'
                return
            if found.processed != info.processed or found.done:
                yield _progress_event(found)
            elif not woken:
                yield ": keepalive\n\n"
            info = found


@router.delete("/sessions/{session_id}", status_code=204, summary="Drop a session's data")
async def delete_session(session_id: SessionId, request: Request) -> Response:
    await sessions.delete(gateway_of(request).redis, session_id, tenant_of(request))
    return Response(status_code=204)


class ActiveOrder(BaseModel):
    num_pedido: str
    cliente: str


@router.get("/orders", summary="Active orders of the carteira (first ones by number)")
async def active_orders(
    request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[ActiveOrder]:
    rows = await use_cases.active_orders(gateway_of(request).dispatcher.carteira, limit)
    return [ActiveOrder(num_pedido=number, cliente=cliente) for number, cliente in rows]


@router.get("/orders/{num_pedido}", summary="One order analysed now (cached briefly)")
async def analyse_order(
    num_pedido: OrderNumberPath,
    request: Request,
    mode: RupturaMode = RupturaMode.INDEPENDENT,
) -> OrderReport:
    gateway = gateway_of(request)
    return await use_cases.analyse_order(
        gateway.redis, gateway.dispatcher.carteira, gateway.settings, num_pedido, mode
    )
