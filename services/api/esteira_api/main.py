"""The gateway's app factory. Nothing connects at import time: the lifespan opens the Redis pool
and the database engine on app.state and closes them on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from esteira_api.auth import AuthenticationMiddleware, RefusalLimiter, document_keys
from esteira_api.changes import Changes
from esteira_api.context import Gateway
from esteira_api.cors import install_cors
from esteira_api.dispatch import Dispatcher
from esteira_api.docs_assets import install_offline_docs
from esteira_api.errors import install_error_handlers
from esteira_api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from esteira_api.routes import (
    compat_ruptura,
    compat_scraping,
    health,
    queues,
    ruptura,
    scraping,
)
from esteira_api.settings import ApiSettings, get_settings
from esteira_core.db import create_db_engine
from esteira_core.heap import tune_collector
from esteira_core.ratelimit import LeasedBuckets
from esteira_core.redis import create_redis

logger = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(settings)
        db = create_db_engine(settings, lock_timeout_seconds=settings.database_lock_timeout_seconds)
        gateway = Gateway(
            settings=settings,
            redis=redis,
            db=db,
            dispatcher=Dispatcher(redis, db, settings),
            changes=Changes(redis),
        )
        app.state.gateway = gateway
        watcher = asyncio.create_task(gateway.dispatcher.watch(), name="queue-health")
        listener = asyncio.create_task(gateway.changes.listen(), name="change-listener")
        if settings.auth_disabled:
            logger.warning(
                "AUTHENTICATION IS OFF (ESTEIRA_AUTH_DISABLED=true): every caller is tenant "
                "'anonymous'; never expose this gateway"
            )
        tune_collector()
        logger.info("gateway started")
        try:
            yield
        finally:
            watcher.cancel()
            listener.cancel()
            await gateway.close()
            logger.info("gateway stopped")

    app = FastAPI(
        title="Esteira",
        summary="Slow work out of the web request: ruptura analysis and portal scraping.",
        version="0.1.0",
        lifespan=lifespan,
        # Esteira exports its own Prometheus metrics; FastAPI's OpenTelemetry hooks would look
        # up the OTEL environment on every request for nothing.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # No trailing-slash redirects: they are built from the Host header, which the client
        # chooses (`/livez/` would send a browser to any host it named); `/livez/` is a 404.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    # Outermost last: the request id and metrics, then the key (before any body is read),
    # then the body's size.
    app.add_middleware(BodySizeLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(
        AuthenticationMiddleware,
        refusals=RefusalLimiter(settings.auth_refusals_per_second, settings.auth_refusal_burst),
        rates=LeasedBuckets(settings.tenant_rate_per_second, settings.tenant_rate_burst),
    )
    app.add_middleware(RequestContextMiddleware)
    install_cors(app, settings.cors_origins)
    # Routes are matched one by one in this order: the ones clients poll come first.
    for router in (
        scraping.router,
        ruptura.router,
        compat_scraping.router,
        compat_ruptura.router,
        queues.router,
        health.router,
    ):
        add_routes(app, router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    install_offline_docs(app)
    document_keys(app)

    @app.get("/ui", include_in_schema=False)
    async def operator_page() -> FileResponse:
        return FileResponse(STATIC / "ui.html")

    return app


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes as the app's own, not `include_router`: FastAPI matches an included
    router's routes through a router of its own for the inclusion, twice per request (to
    select, then to handle), which cost more CPU than a cheap route's own work (/livez 118 ->
    66 us in process). Each route already carries its router's prefix, tags and responses, and
    nothing is given at inclusion, so the routes and the OpenAPI document are the same."""
    app.router.routes.extend(router.routes)
