"""Request id, security headers and latency metrics for every request, and the body limit, as
plain ASGI (no per-request task)."""

from __future__ import annotations

import os
import re
import time

from prometheus_client.metrics import Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from esteira_api.changes import WAITED_SCOPE_KEY
from esteira_api.errors import error_json
from esteira_core import metrics
from esteira_core.logging import bind

REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The latency histogram's child per (route, method, status), looked up once: a
        # labels() call takes a lock and builds its key on every request. A few hundred at
        # most (the route templates, "unmatched", the methods and statuses they answer).
        self.durations: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        # A client's id is kept only when it is harmless to log and echo.
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else os.urandom(16).hex()
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message["headers"] = [
                    *message.get("headers", ()),
                    *security_headers(scope["path"]),
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
                waited = scope.get(WAITED_SCOPE_KEY)
                if waited is not None:  # a long poll says how long it held the answer back
                    headers.append((b"server-timing", f"wait;dur={waited * 1000:.1f}".encode()))
            await send(message)

        try:
            with bind(request_id=request_id):
                await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            # The gateway's own latency: a long poll's wait for a change is not work.
            spent = time.perf_counter() - started - scope.get(WAITED_SCOPE_KEY, 0.0)
            series = (template, scope["method"], status)
            duration = self.durations.get(series)
            if duration is None:
                duration = self.durations[series] = metrics.HTTP_REQUEST_DURATION.labels(
                    template, scope["method"], str(status)
                )
            duration.observe(spent)


class BodySizeLimitMiddleware:
    """Refuses a request body over `limit` bytes with 413, whether it declares its length (at
    once) or streams it (when the route reads past the limit), before any of it is parsed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            response = error_json(scope["path"], 413, "body_too_large", self._message())
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # An HTTPException passes through the body parsing to the error handlers.
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return f"The request body exceeds {self.limit} bytes."


# The operator page loads only its own scripts and styles and talks only to its own origin.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# The example pages under /static stand for someone else's page with its own inline script
# (addon-demo.html); they get the same policy with inline scripts allowed.
EXAMPLE_PAGE_POLICY = PAGE_POLICY.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")


_EVERYWHERE = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")]
_PAGE = [*_EVERYWHERE, (b"content-security-policy", PAGE_POLICY.encode())]
_EXAMPLE_PAGE = [*_EVERYWHERE, (b"content-security-policy", EXAMPLE_PAGE_POLICY.encode())]


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    """`X-Content-Type-Options: nosniff` and `X-Frame-Options: DENY` on every answer; a
    Content-Security-Policy on the operator page and the static files too."""
    if path == "/ui" or (path.startswith("/static/") and not path.endswith(".html")):
        return _PAGE
    if path.startswith("/static/"):
        return _EXAMPLE_PAGE
    return _EVERYWHERE
