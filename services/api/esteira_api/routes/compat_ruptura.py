"""The seed's ruptura routes, kept so existing front ends (the worker add-on and the synchronous
per-order button) switch by changing a base URL. Thin adapters over esteira_ruptura.

The seed named these routes and fields (offset_novo, completo, progresso, workers) but never
wrote their bodies down; the shapes here keep those names and the v1 result objects.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel, Field

from esteira_api.auth import authenticated_router, tenant_of
from esteira_api.deps import gateway_of
from esteira_api.responses import json_with_documents
from esteira_api.routes.ruptura import (
    Limit,
    Offset,
    OrderNumberPath,
    SessionId,
)
from esteira_core.jobs import Pool, RupturaMode
from esteira_ruptura import sessions, use_cases
from esteira_ruptura.models import OrderNumber

router = authenticated_router("/api/ruptura", "compat: ruptura", 400, 404, 413)


class IniciarRequest(BaseModel):
    pedidos: list[OrderNumber] = Field(description="Order numbers (numbers are accepted too).")
    modo: RupturaMode = RupturaMode.INDEPENDENT


class LimparRequest(BaseModel):
    session_id: str = Field(pattern=r"^[0-9a-f]{32}$")


def _progress(processed: int, total: int) -> dict[str, Any]:
    percent = round(100.0 * processed / total, 1) if total else 100.0
    return {"processados": processed, "total": total, "percentual": percent}


@router.post("/worker/iniciar-processamento")
async def iniciar_processamento(body: IniciarRequest, request: Request) -> dict[str, Any]:
    gateway = gateway_of(request)
    started = await gateway.dispatcher.start_session(
        body.pedidos, body.modo, None, tenant_of(request)
    )
    if isinstance(started, use_cases.InlineAnswer):
        # Redis is down: no session to poll, so every result comes in this answer.
        return {
            "success": True,
            "session_id": None,
            "modo": "inline",
            "total_pedidos": started.total,
            "resultados": started.results,
            "completo": True,
            "progresso": _progress(started.total, started.total),
            "mensagem": f"{started.total} pedidos analisados diretamente (fila indisponível)",
        }
    return {
        "success": True,
        "session_id": started.session_id,
        "total_pedidos": started.total,
        "total_lotes": started.batches,
        "workers": await gateway.dispatcher.workers_online(Pool.RUPTURA),
        "mensagem": f"{started.total} pedidos enviados para processamento em "
        f"{started.batches} lotes",
    }


@router.get("/worker/buscar-resultados/{session_id}")
async def buscar_resultados(
    session_id: SessionId,
    request: Request,
    offset: Offset = 0,
    limit: Limit = 2000,
) -> Response:
    page = await sessions.results_since(
        gateway_of(request).redis, session_id, tenant_of(request), offset, limit
    )
    envelope = {
        "success": True,
        "offset_novo": page.next_offset,
        "completo": page.done,
        "progresso": _progress(page.info.processed, page.info.total),
    }
    return json_with_documents(envelope, "resultados", page.results)


@router.get("/worker/status/{session_id}")
async def status(session_id: SessionId, request: Request) -> dict[str, Any]:
    gateway = gateway_of(request)
    info = await sessions.owned(gateway.redis, session_id, tenant_of(request))
    return {
        "success": True,
        "session_id": session_id,
        "status": info.status,
        "completo": info.done,
        "progresso": _progress(info.processed, info.total),
        "workers": await gateway.dispatcher.workers_online(Pool.RUPTURA),
    }


@router.post("/worker/limpar-cache")
async def limpar_cache(body: LimparRequest, request: Request) -> dict[str, Any]:
    await sessions.delete(gateway_of(request).redis, body.session_id, tenant_of(request))
    return {"success": True, "mensagem": f"Cache da sessão {body.session_id} removido"}


@router.get("/analisar-pedido/{num_pedido}")
async def analisar_pedido(num_pedido: OrderNumberPath, request: Request) -> dict[str, Any]:
    gateway = gateway_of(request)
    report = await use_cases.analyse_order(
        gateway.redis,
        gateway.dispatcher.carteira,
        gateway.settings,
        num_pedido,
        RupturaMode.INDEPENDENT,
    )
    return {"success": True, **report.model_dump(mode="json")}
