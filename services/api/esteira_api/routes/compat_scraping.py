"""The seed's scraping routes, with the shapes its React hook and progress modal read."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from esteira_api.auth import authenticated_router, tenant_of
from esteira_api.deps import gateway_of
from esteira_api.routes.scraping import OsNumber, TaskId, kept_task
from esteira_core.jobs import Pool
from esteira_scraping import tasks

router = authenticated_router("/api/desenvolvimento", "compat: scraping", 404, 502)

_STATE = {
    "queued": "PENDING",
    "deferred": "PENDING",
    "in_progress": "PROGRESS",
    "retrying": "PROGRESS",
    "success": "SUCCESS",
    "failed": "FAILURE",
}


@router.post("/buscar-os-async/{numero_os}")
async def buscar_os_async(numero_os: OsNumber, request: Request) -> dict[str, Any]:
    found = await gateway_of(request).dispatcher.lookup(numero_os, tenant_of(request))
    if found.answered:
        # "scraped": the queue is down and the gateway scraped at once. The seed's hook reads
        # the data of a found_existing answer, so the fallback stays invisible to it.
        recorded = found.status == "found_existing"
        return {
            "status": "found_existing",
            "message": f"OS {numero_os} "
            + ("já existe no sistema" if recorded else "obtida diretamente do portal"),
            "data": found.data,
            "fonte": "banco_local" if recorded else "portal",
        }
    message = (
        f"OS {numero_os} já está em processamento"
        if found.coalesced
        else f"OS {numero_os} adicionada à fila de processamento"
    )
    return {
        "status": "queued",
        "message": message,
        "task_id": found.task_id,
        "estimated_time": "2-5 minutos",
        "instructions": {"check_status": f"/api/desenvolvimento/scraping-status/{found.task_id}"},
    }


@router.get("/scraping-status/{task_id}")
async def scraping_status(task_id: TaskId, request: Request) -> dict[str, Any]:
    tenant = tenant_of(request)
    found = await kept_task(gateway_of(request), task_id, tenant)
    task = tasks.seen_by(found, task_id, tenant)
    body: dict[str, Any] = {
        "task_id": task_id,
        "status": _STATE.get(task["status"], "PENDING"),
        "message": tasks.STAGE_MESSAGES.get(task["stage"], task["stage"]),
        "progress": task["progress"],
        "numero_os": task["numero_os"],
    }
    if task["status"] == "success":
        body["result"] = task["result"]
    if task["status"] == "failed":
        body["error"] = task["error"]["message"]
        body["message"] = task["error"]["message"]
    return body


@router.get("/queue-status")
async def queue_status(request: Request) -> dict[str, Any]:
    stats = (await gateway_of(request).dispatcher.decide(Pool.SCRAPER, fresh=True)).stats
    if stats is None:
        return {
            "status": "success",
            "queue_info": {
                "active_tasks": 0,
                "scheduled_tasks": 0,
                "total_queue": 0,
                "workers_online": 0,
            },
            "celery_available": False,
        }
    scheduled = stats.ready + stats.deferred
    return {
        "status": "success",
        "queue_info": {
            "active_tasks": stats.in_progress,
            "scheduled_tasks": scheduled,
            "total_queue": stats.in_progress + scheduled,
            "workers_online": stats.workers_online,
        },
        "celery_available": stats.workers_online > 0,
    }
