"""A worker process's HTTP port: `/metrics` for Prometheus, `/livez` and `/readyz` for the
kubelet. It opens before the worker first reaches Redis, so a worker started while Redis is down
is alive (and waits) instead of failing its start-up probe into a restart loop.

- `/livez`: the worker's event loop has turned within the last `stall_seconds`. It is answered
  from a thread, so it tells a blocked loop (a job that never yields) from a live one; the
  metrics alone, served by the same thread, would say alive regardless.
- `/readyz`: alive, and serving its queue (connected to Redis, its start-up hook done).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

TICK_SECONDS = 1.0


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Probes every few seconds are not news."""


class Probes:
    def __init__(self, stall_seconds: float, serving: Callable[[], bool]) -> None:
        self.stall_seconds = stall_seconds
        self.serving = serving
        self.last_tick = time.monotonic()
        self._server: _Server | None = None
        self._metrics = make_wsgi_app()

    async def tick(self) -> None:
        """Runs on the worker's loop for its life: proof that the loop turns."""
        while True:
            self.last_tick = time.monotonic()
            await asyncio.sleep(TICK_SECONDS)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ("/livez", "/readyz"):
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        stalled = time.monotonic() - self.last_tick
        alive = stalled < self.stall_seconds
        ok = alive and (path == "/livez" or self.serving())
        body = {
            "status": "ok" if ok else ("not_serving" if alive else "stalled"),
            "loop_stalled_seconds": round(stalled, 1),
        }
        start_response(
            "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")]
        )
        return [json.dumps(body).encode()]

    def serve(self, host: str, port: int) -> None:
        self._server = make_server(host, port, self._app, _Server, _QuietHandler)
        threading.Thread(target=self._server.serve_forever, name="probes", daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
