"""Who is calling, and whether they may call now: the API key in `Authorization: Bearer`, its
tenant, and the tenant's request rate shared by every gateway replica (a token bucket in Redis).

Every route but the probes, /metrics and the static files depends on `authenticate`; the routes
that own data (sessions, scrape tasks) take the tenant it returns.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from esteira_api.context import Gateway
from esteira_api.deps import get_gateway
from esteira_api.errors import ApiError, error_responses
from esteira_core import keys, metrics, ratelimit
from esteira_core.redis import REDIS_ERRORS

ANONYMOUS = "anonymous"

bearer = HTTPBearer(
    auto_error=False, description="An Esteira API key: `Authorization: Bearer <key>`."
)


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    # Called, not declared as a sub-dependency: each one FastAPI resolves costs the request
    # tens of microseconds.
    gateway = await get_gateway(request)
    settings = gateway.settings
    if settings.auth_disabled:
        tenant = ANONYMOUS
    elif credentials is None:
        raise _refused("unauthenticated", "Send an API key: Authorization: Bearer <key>.")
    else:
        found = settings.tenant_for(credentials.credentials)
        if found is None:
            raise _refused("invalid_api_key", "The API key is not valid.", 'error="invalid_token"')
        tenant = found
    await _within_rate(gateway, tenant)
    return tenant


def _refused(code: str, message: str, challenge: str = "") -> ApiError:
    """A 401, counted, with the challenge RFC 6750 asks for."""
    metrics.REQUESTS_REJECTED.labels(code).inc()
    header = f"Bearer {challenge}" if challenge else "Bearer"
    return ApiError(401, code, message, headers={"WWW-Authenticate": header})


async def _within_rate(gateway: Gateway, tenant: str) -> None:
    """429 over the tenant's rate. Skipped while Redis is failing: the limit protects the
    workers, and with Redis down the gateway's inline paths have their own bounds."""
    settings = gateway.settings
    if not settings.tenant_rate_per_second or not gateway.dispatcher.redis_trusted():
        return
    try:
        wait = await ratelimit.take(
            gateway.redis,
            keys.tenant_rate_bucket(tenant),
            settings.tenant_rate_per_second,
            settings.tenant_rate_burst,
        )
    except REDIS_ERRORS:
        gateway.dispatcher.redis_failed()
        return
    if wait > 0:
        metrics.REQUESTS_REJECTED.labels("rate_limited").inc()
        retry_after = max(1, math.ceil(wait))
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests; try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


TenantDep = Annotated[str, Depends(authenticate)]


def authenticated_router(prefix: str, tag: str, *errors: int) -> APIRouter:
    """A router whose every route wants an API key, documenting the errors any of them may
    answer (401, 422, 429, 503) and those its routes add (`errors`)."""
    return APIRouter(
        prefix=prefix,
        tags=[tag],
        dependencies=[Depends(authenticate)],
        responses=error_responses(*sorted({401, 422, 429, 503, *errors})),
    )
