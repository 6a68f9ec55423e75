"""Scraping API v1: look an OS up (from the database, or by a scrape on the portal) and follow
the scrape task."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from esteira_api.auth import authenticated_router, tenant_of
from esteira_api.context import Gateway
from esteira_api.deps import LongPollWait, gateway_of
from esteira_api.responses import model_json
from esteira_core import keys
from esteira_scraping import tasks
from esteira_scraping.runner import OS_NUMBER_PATTERN

router = authenticated_router("/api/v1/scraping", "scraping", 404, 502)

OsNumber = Annotated[
    str, Path(pattern=OS_NUMBER_PATTERN, description="The OS number: 1 to 12 digits.")
]
TaskId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="A scrape task's id.")]


class LookupBody(BaseModel):
    status: str
    numero_os: str
    data: dict[str, Any] | None = None
    task_id: str | None = None
    coalesced: bool = False
    status_url: str | None = None


class TaskBody(BaseModel):
    task_id: str
    numero_os: str
    status: str
    stage: str
    progress: int
    attempts: int
    shared: bool
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    eta: float | None = None
    created_at: float
    updated_at: float


@router.post(
    "/os/{numero_os}",
    summary="Look an OS up",
    response_model=LookupBody,
    responses={202: {"model": LookupBody, "description": "A scrape is queued or running"}},
)
async def lookup_os(numero_os: OsNumber, request: Request) -> JSONResponse:
    found = await gateway_of(request).dispatcher.lookup(numero_os, tenant_of(request))
    body = LookupBody(
        status=found.status,
        numero_os=found.numero_os,
        data=found.data,
        task_id=found.task_id,
        coalesced=found.coalesced,
        status_url=f"/api/v1/scraping/tasks/{found.task_id}" if found.task_id else None,
    )
    code = 200 if found.answered else 202
    return JSONResponse(body.model_dump(mode="json"), status_code=code)


@router.get("/tasks", summary="The latest scrape tasks, newest first")
async def recent_tasks(
    request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[TaskBody]:
    found = await tasks.recent(gateway_of(request).redis, tenant_of(request), limit)
    return [TaskBody.model_validate(tasks.without_owners(task)) for task in found]


@router.get(
    "/tasks/{task_id}",
    summary="A scrape task's status, progress and result",
    response_model=TaskBody,
    description=(
        "With `since` (the `updated_at` last seen) and `wait`, a long poll: the answer comes"
        " at once if the task changed after `since` or has ended, else at its next change or"
        " after `wait` seconds (the `Server-Timing` header says how long it waited)."
    ),
)
async def task_status(
    task_id: TaskId,
    request: Request,
    wait: LongPollWait = 0,
    since: Annotated[
        float | None, Query(ge=0, description="The task's `updated_at` as last seen.")
    ] = None,
) -> Response:
    gateway, tenant = gateway_of(request), tenant_of(request)

    # The task now if it changed after `since` or has ended; else after its next change, or
    # `wait` seconds. Without `since`, now. A task this tenant does not own is a 404 before
    # any wait.
    def news(task: dict[str, Any] | None) -> bool:
        seen = tasks.seen_by(task, task_id, tenant)
        return since is None or seen["status"] in tasks.ENDED or seen["updated_at"] > since

    task = await gateway.changes.answer(
        request.scope,
        keys.scrape_task_events(task_id),
        wait,
        lambda: kept_task(gateway, task_id, tenant, since),
        news,
    )
    return model_json(TaskBody.model_validate(tasks.seen_by(task, task_id, tenant)))


async def kept_task(
    gateway: Gateway, task_id: str, tenant: str, since: float | None = None
) -> dict[str, Any] | None:
    """The task as read between two of its changes, for every poll of it (Changes.latest), in
    both APIs. Read again: for a tenant that joined it since (a join is not published), and
    when it is older than what the client has seen (`since`: another gateway process answered
    a change this one has not heard of yet)."""
    task = await gateway.changes.latest(
        keys.scrape_task_events(task_id), lambda: tasks.get(gateway.redis, task_id)
    )
    if (
        task is None
        or tenant not in task["owners"]
        or (since is not None and task["updated_at"] < since)
    ):
        task = await tasks.get(gateway.redis, task_id)
    return task
