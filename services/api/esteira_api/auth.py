"""Who is calling, and whether they may call now: the API key in `Authorization: Bearer`, its
tenant, and the tenant's request rate shared by every gateway replica (a token bucket in Redis).

Every route under /api/ (all but the probes, /metrics, the docs and the static files) is
checked by `AuthenticationMiddleware` before its body is read, and documented as wanting a key
(`document_keys`); the routes that own data (sessions, scrape tasks) read the tenant it found
with `tenant_of`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from esteira_api.context import Gateway
from esteira_api.errors import ApiError, error_json, error_responses
from esteira_core import keys, metrics, ratelimit
from esteira_core.redis import REDIS_ERRORS

ANONYMOUS = "anonymous"


# Every route under this prefix wants a key; the middleware checks it before the route runs.
PROTECTED_PREFIX = "/api/"
TENANT_KEY = "esteira_tenant"  # where the middleware leaves the tenant, in the request's state


class AuthenticationMiddleware:
    """Checks the API key and the tenant's rate of every request under /api/ before the app
    reads a byte of its body: a caller without a valid key costs a hash and a dictionary
    look-up, never a body parsed (`{"pedidos": [1,` without a key is 401, not 422). The tenant
    is left in the request's state for `tenant_of`.

    CORS preflights (OPTIONS) pass: browsers send them without credentials, and the router
    answers them without reading a body."""

    def __init__(
        self, app: ASGIApp, refusals: RefusalLimiter, rates: ratelimit.LeasedBuckets
    ) -> None:
        self.app = app
        self.refusals = refusals
        self.rates = rates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not scope["path"].startswith(PROTECTED_PREFIX)
            or scope["method"] == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        gateway: Gateway = scope["app"].state.gateway
        authorization = next(
            (value for name, value in scope["headers"] if name == b"authorization"), None
        )
        client = scope.get("client")
        try:
            tenant = await identify(
                gateway, authorization, client[0] if client else "", self.refusals, self.rates
            )
        except ApiError as error:
            response = error_json(
                scope["path"], error.status, error.code, error.message, headers=error.headers
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[TENANT_KEY] = tenant
        await self.app(scope, receive, send)


async def identify(
    gateway: Gateway,
    authorization: bytes | None,
    address: str,
    refusals: RefusalLimiter,
    rates: ratelimit.LeasedBuckets,
) -> str:
    """The caller's tenant, within its rate; else the ApiError that refuses it (401, or 429
    once its address has been refused too often)."""
    settings = gateway.settings
    if settings.auth_disabled:
        tenant = ANONYMOUS
    else:
        scheme, _, key = (authorization or b"").decode("latin-1").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise refusals.refuse(
                address, "unauthenticated", "Send an API key: Authorization: Bearer <key>."
            )
        found = settings.tenant_for(key)
        if found is None:
            raise refusals.refuse(
                address, "invalid_api_key", "The API key is not valid.", 'error="invalid_token"'
            )
        tenant = found
    await _within_rate(gateway, rates, tenant)
    return tenant


def tenant_of(request: Request) -> str:
    """The tenant the middleware found for this request."""
    tenant: str | None = request.scope.get("state", {}).get(TENANT_KEY)
    if tenant is None:  # a route outside PROTECTED_PREFIX that wants a key: a wiring mistake
        raise RuntimeError(f"{request.url.path} wants a key but is outside {PROTECTED_PREFIX}")
    return tenant


class RefusalLimiter:
    """Refusals (401) per client address, a token bucket each, in this gateway process only:
    beyond `burst` at once and `rate` a second, an address gets 429 with Retry-After instead,
    still without its body read. A valid key is never limited here. At most `addresses`
    buckets are kept, the least recently refused dropped first, so a caller with many
    addresses costs bounded memory (and the buckets it pushes out start again full)."""

    def __init__(self, rate: float, burst: int, addresses: int = 65536) -> None:
        self.rate = rate
        self.burst = burst
        self.addresses = addresses
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def refuse(self, address: str, code: str, message: str, challenge: str = "") -> ApiError:
        """The error for a refused key: 401, counted, with the challenge RFC 6750 asks for;
        or 429 when the address is over its refusals."""
        now = time.monotonic()
        tokens, last = self.buckets.pop(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._keep(address, tokens - 1, now)
            metrics.REQUESTS_REJECTED.labels(code).inc()
            header = f"Bearer {challenge}" if challenge else "Bearer"
            return ApiError(401, code, message, headers={"WWW-Authenticate": header})
        self._keep(address, tokens, now)
        metrics.REQUESTS_REJECTED.labels("too_many_refusals").inc()
        retry_after = max(1, math.ceil((1 - tokens) / self.rate))
        return ApiError(
            429,
            "too_many_refusals",
            f"Too many requests without a valid API key; try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )

    def _keep(self, address: str, tokens: float, now: float) -> None:
        self.buckets[address] = (tokens, now)
        if len(self.buckets) > self.addresses:
            self.buckets.popitem(last=False)


async def _within_rate(gateway: Gateway, rates: ratelimit.LeasedBuckets, tenant: str) -> None:
    """429 over the tenant's rate (its tokens taken a lease at a time: a busy tenant costs a
    Redis round trip per lease, not per request). Skipped while Redis is failing: the limit
    protects the workers, and with Redis down the gateway's inline paths have their own
    bounds."""
    if not rates.per_second or not gateway.dispatcher.redis_trusted():
        return
    try:
        wait = await rates.take(gateway.redis, keys.tenant_rate_bucket(tenant))
    except REDIS_ERRORS as error:
        gateway.dispatcher.blame_redis(error)
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


def authenticated_router(prefix: str, tag: str, *errors: int) -> APIRouter:
    """A router for routes that want an API key (its prefix must be under PROTECTED_PREFIX),
    documenting the errors any of them may answer (401, 422, 429, 503) and those its routes
    add (`errors`)."""
    if not f"{prefix}/".startswith(PROTECTED_PREFIX):
        raise ValueError(f"{prefix} is outside {PROTECTED_PREFIX}: nothing would check its keys")
    return APIRouter(
        prefix=prefix,
        tags=[tag],
        responses=error_responses(*sorted({401, 422, 429, 503, *errors})),
    )


BEARER_SCHEME = "HTTPBearer"


def document_keys(app: FastAPI) -> None:
    """OpenAPI documents the bearer scheme on every operation under PROTECTED_PREFIX, the ones
    the middleware checks. Written into the schema once, not declared as a security dependency
    of every route: FastAPI would resolve that dependency on every request, for nothing (the
    middleware has read the header already)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[BEARER_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An Esteira API key: `Authorization: Bearer <key>`.",
        }
        for path, operations in schema["paths"].items():
            if path.startswith(PROTECTED_PREFIX):
                for operation in operations.values():
                    operation["security"] = [{BEARER_SCHEME: []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
