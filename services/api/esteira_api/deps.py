"""What the routes take from a request besides their parameters.

The one Gateway the lifespan put on app.state (settings, Redis, database, dispatcher) is read
from the request by `gateway_of`, not resolved as a FastAPI dependency: FastAPI resolves every
dependency of a route on every request (its parameters, its cache key, its own dependencies),
which cost more CPU than a cheap route's own work, for a value that never changes. No
dependency override is needed in tests either: they build the app with their settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from esteira_api.changes import MAX_WAIT_SECONDS
from esteira_api.context import Gateway


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


LongPollWait = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="Seconds the answer may wait for a change (a long poll); 0 answers at once.",
    ),
]
