"""One error envelope for every error the gateway returns: {"error": {"code", "message"}}.

Validation errors also carry `details` (where and what); nothing ever carries a stack trace.
Under the seeds' compatibility prefixes the envelope also says "success": false, which is what
the old front ends test.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from esteira_api.dispatch import too_busy
from esteira_core.breaker import CircuitOpen
from esteira_core.db import DATABASE_ERRORS
from esteira_core.errors import (
    Busy,
    DomainError,
    Invalid,
    NotFound,
    QuotaExceeded,
    TooLarge,
    UpstreamFailed,
)

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a route raises on purpose, with the status and code the client should see."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


COMPAT_PREFIXES = ("/api/ruptura/", "/api/desenvolvimento/")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: session_not_found, rate_limited...")
    message: str = Field(description="For people; never a stack trace.")
    details: list[dict[str, Any]] | None = Field(
        None, description="Validation errors only: where and what."
    )


class ErrorBody(BaseModel):
    success: bool = Field(False, description="Present (false) under the seeds' prefixes only.")
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting the error envelope for each status."""
    return {
        status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
        for status in statuses
    }


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    details: Any = None,
) -> JSONResponse:
    return error_json(request.url.path, status, code, message, headers=headers, details=details)


def error_json(
    path: str,
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    details: Any = None,
) -> JSONResponse:
    """The envelope for a request to `path`: what middleware answers with, having no Request."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    body: dict[str, Any] = {"error": error}
    if path.startswith(COMPAT_PREFIXES):
        body = {"success": False, **body}
    return JSONResponse(body, status_code=status, headers=headers)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status, exc.code, exc.message, headers=exc.headers)


# Each kind of error a library raises, as the one status a client sees for it.
DOMAIN_STATUS: dict[type[DomainError], int] = {
    Invalid: 400,
    NotFound: 404,
    TooLarge: 413,
    QuotaExceeded: 429,
    UpstreamFailed: 502,
    Busy: 503,
}


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = next(code for kind, code in DOMAIN_STATUS.items() if isinstance(exc, kind))
    headers = (
        {"Retry-After": str(exc.retry_after)} if isinstance(exc, Busy | QuotaExceeded) else None
    )
    return error_response(request, status, exc.code, exc.message, headers=headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return error_response(
        request, exc.status_code, _code_for(exc.status_code), message, headers=exc.headers
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return error_response(
        request, 422, "validation_error", message, details=jsonable_encoder(details)
    )


async def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """Redis failed under a route that cannot work without it (a session's results, a task's
    status): the client is told to come back, and the queue health learns of it at once (unless
    this gateway was too busy to read Redis's answer in time: then it says so)."""
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is not None and not gateway.dispatcher.blame_redis(exc):
        return await _domain_error(request, too_busy())
    return _unavailable(
        request,
        exc,
        "redis_unavailable",
        "The session and task store is unavailable; try again shortly.",
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database refused, dropped or did not answer (or held a lock past the gateway's lock
    timeout) under a route that reads it."""
    return _unavailable(
        request,
        exc,
        "database_unavailable",
        "The database is unavailable or busy; try again shortly.",
    )


def _unavailable(request: Request, exc: Exception, code: str, message: str) -> JSONResponse:
    """A store the route needs failed: 503, and the client is told to come back. Only the
    error's kind is logged: its text names the server, and may carry more."""
    logger.warning(
        code.replace("_", " "), extra={"path": request.url.path, "error": type(exc).__name__}
    )
    return error_response(request, 503, code, message, headers={"Retry-After": "5"})


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error(
        "unhandled error", exc_info=exc, extra={"path": request.url.path, "method": request.method}
    )
    return error_response(request, 500, "internal_error", "Internal server error.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    for kind in DOMAIN_STATUS:
        app.add_exception_handler(kind, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for redis_error in (RedisError, CircuitOpen):
        app.add_exception_handler(redis_error, _redis_unavailable)
    for database_error in DATABASE_ERRORS:
        app.add_exception_handler(database_error, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
