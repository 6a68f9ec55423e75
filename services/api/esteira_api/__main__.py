"""`python -m esteira_api`: the gateway on uvicorn, as its container image runs it (the `esteira
api` command runs the same function), with the edge's protocol (esteira_api.edge) so that it
can face the internet without an ingress."""

from __future__ import annotations

import uvicorn

from esteira_api.edge import HeadGuard, raise_open_file_limit
from esteira_api.settings import get_settings
from esteira_core.logging import configure_logging


def serve(host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    raise_open_file_limit()  # before the worker processes start: they inherit it
    uvicorn.run(
        "esteira_api.main:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers or settings.api_workers,
        log_config=None,
        proxy_headers=True,
        access_log=False,
        # The edge (esteira_api.edge): each new connection a HeadGuard until its first head is
        # whole, then uvicorn's httptools protocol with the same deadlines and caps.
        http=HeadGuard,
        timeout_keep_alive=settings.api_keep_alive_seconds,
    )


if __name__ == "__main__":
    serve()
