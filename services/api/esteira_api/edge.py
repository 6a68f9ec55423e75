"""The gateway's own edge: what an ingress would otherwise do for it, in uvicorn's HTTP protocol.

uvicorn (httptools) has no deadline for a request head, no cap on its size and no cap on
connections, so a client that opens sockets and sends half a head holds them for ever. This
protocol is uvicorn's, with, per gateway process:

- a **head deadline**: a connection that has not sent a complete request head
  `ESTEIRA_API_HEADER_TIMEOUT_SECONDS` after it opened (or after the head's first byte, on a
  kept-alive connection) gets 408 and is closed; an idle kept-alive connection is closed after
  `ESTEIRA_API_KEEP_ALIVE_SECONDS` (uvicorn's own timer);
- a **head size cap**: a request line over `ESTEIRA_API_MAX_LINE_BYTES` gets 414, a header line
  over it or a head over `ESTEIRA_API_MAX_HEAD_BYTES` 431, and the connection is closed, as soon
  as the bytes received say so (the head is never buffered whole);
- a **connection cap per client address** (`ESTEIRA_API_MAX_CONNECTIONS_PER_ADDRESS`): one more
  is answered 429 at once, before anything is read, and closed;
- a **connection cap in total** (`ESTEIRA_API_MAX_CONNECTIONS`, kept under the open-file
  limit): one more closes the connection that has waited longest without a request in progress
  (a half-sent head or an idle keep-alive), so sockets that do nothing cannot crowd out callers
  that do something; only when every connection is serving a request is the newcomer answered
  503 with Retry-After.

Each refusal is counted in `esteira_requests_rejected_total{reason}` (`too_many_connections`,
`server_busy`, `idle_evicted`, `header_timeout`, `head_too_large`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr
from uvicorn.server import ServerState

from esteira_api.settings import ApiSettings, get_settings
from esteira_core import metrics

logger = logging.getLogger(__name__)

# A refused connection is closed once the client's first bytes are in (so the kernel closes it
# with a FIN and the client reads the answer) or after this long, whichever is first; beyond
# LINGERING_MAX refusals at once, at once.
LINGER_SECONDS = 1.0
LINGERING_MAX = 256


def canned_response(
    status: int, reason: str, code: str, message: str, retry_after: int = 0
) -> bytes:
    """A whole HTTP/1.1 answer in the gateway's error envelope, written without the app."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        "x-content-type-options: nosniff",
    ]
    if retry_after:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class EdgeLimits:
    header_timeout: float
    max_head_bytes: int
    max_line_bytes: int
    max_connections: int
    max_connections_per_address: int

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> EdgeLimits:
        return cls(
            header_timeout=settings.api_header_timeout_seconds,
            max_head_bytes=settings.api_max_head_bytes,
            max_line_bytes=settings.api_max_line_bytes,
            max_connections=settings.api_max_connections,
            max_connections_per_address=settings.api_max_connections_per_address,
        )


@dataclass
class Edge:
    """One gateway process's connections: how many per address, and which are waiting for a
    request (oldest first: a dict keeps insertion order), the ones closed first when full."""

    limits: EdgeLimits
    open: int = 0
    per_address: dict[str, int] = field(default_factory=dict)
    waiting: dict[EdgeProtocol, None] = field(default_factory=dict)
    lingering: int = 0

    def admit(self, address: str) -> bytes | None:
        """Counts the connection in, or returns the answer that refuses it."""
        cap = self.limits.max_connections_per_address
        if cap and self.per_address.get(address, 0) >= cap:
            metrics.REQUESTS_REJECTED.labels("too_many_connections").inc()
            return TOO_MANY_CONNECTIONS
        if self.open >= self.limits.max_connections:
            if not self.waiting:
                metrics.REQUESTS_REJECTED.labels("server_busy").inc()
                return SERVER_BUSY
            oldest = next(iter(self.waiting))
            metrics.REQUESTS_REJECTED.labels("idle_evicted").inc()
            oldest.evict()
        self.open += 1
        self.per_address[address] = self.per_address.get(address, 0) + 1
        return None

    def release(self, address: str) -> None:
        self.open -= 1
        left = self.per_address[address] - 1
        if left:
            self.per_address[address] = left
        else:
            del self.per_address[address]


TOO_MANY_CONNECTIONS = canned_response(
    429,
    "Too Many Requests",
    "too_many_connections",
    "Too many connections from your address; reuse one or try again shortly.",
    retry_after=1,
)
SERVER_BUSY = canned_response(
    503,
    "Service Unavailable",
    "server_busy",
    "The gateway has no free connection; try again shortly.",
    retry_after=1,
)
HEADER_TIMEOUT = canned_response(
    408, "Request Timeout", "header_timeout", "The request head did not arrive in time."
)
URI_TOO_LONG = canned_response(
    414, "URI Too Long", "head_too_large", "The request line is too long."
)
HEAD_TOO_LARGE = canned_response(
    431,
    "Request Header Fields Too Large",
    "head_too_large",
    "The request head or one of its lines is too large.",
)


# Files the process keeps for itself beyond client connections: Redis and database
# connections, a browser's pipes, logs, the listening socket.
RESERVED_FILES = 512


def raise_open_file_limit() -> int:
    """Raises this process's soft open-file limit to its hard limit; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        soft = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


@lru_cache
def process_edge() -> Edge:
    """This process's edge (uvicorn makes one protocol per connection; each worker process of
    `ESTEIRA_API_WORKERS` has its own limits and counts). The connection cap is kept under
    the open-file limit: a process out of files cannot even accept a connection to refuse it."""
    limits = EdgeLimits.from_settings(get_settings())
    room = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - RESERVED_FILES
    if limits.max_connections > room:
        logger.warning(
            "ESTEIRA_API_MAX_CONNECTIONS lowered to the open-file limit",
            extra={"configured": limits.max_connections, "effective": room},
        )
        limits = replace(limits, max_connections=max(room, 16))
    return Edge(limits)


class _Refusal(asyncio.Protocol):
    """Answers a refused connection without reading its request, then closes it."""

    def __init__(self, edge: Edge, answer: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.edge = edge
        self.answer = answer
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not one
        transport.write(self.answer)
        if self.edge.lingering >= LINGERING_MAX:
            transport.close()
            return
        self.edge.lingering += 1
        self.timer = self.loop.call_later(LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:  # noqa: ARG002 (read to be dropped)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.edge.lingering -= 1


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the edge's deadlines and caps (see the module)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.edge = process_edge()
        self.address: str | None = None  # set while counted in
        self.head_timer: asyncio.TimerHandle | None = None  # armed while a head is awaited
        self.head_bytes = 0
        self.head_error: bytes | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = get_remote_addr(transport)
        address = peer[0] if peer else ""
        refusal = self.edge.admit(address)
        if refusal is not None:
            refused = _Refusal(self.edge, refusal, self.loop)
            transport.set_protocol(refused)
            refused.connection_made(transport)
            return
        self.address = address
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def _forget(self) -> None:
        self._stop_head_timer()
        self.edge.waiting.pop(self, None)
        if self.address is not None:
            self.edge.release(self.address)
            self.address = None

    def evict(self) -> None:
        """Closed to make room: it was waiting for a request the longest."""
        self._forget()
        self.transport.close()

    # --- the head deadline ----------------------------------------------------------------
    def _await_head(self) -> None:
        self.edge.waiting[self] = None
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(
                self.edge.limits.header_timeout, self._head_timed_out
            )

    def _stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        metrics.REQUESTS_REJECTED.labels("header_timeout").inc()
        # With a response in progress (a pipelined head stalled behind it) only closing is safe.
        self._close_with(HEADER_TIMEOUT if self._between_requests() else None)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _close_with(self, answer: bytes | None) -> None:
        if self.transport.is_closing():
            return
        if answer is not None:
            self.transport.write(answer)
        self._forget()
        self.transport.close()

    # --- the head size cap ------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.head_error is None and self.head_timer is not None:
            # Still inside a head after these bytes (a chunk that also ends a body is counted
            # whole: the cap errs by one read at most, for a pipelining client).
            self.head_bytes += len(data)
            if self.head_bytes > self.edge.limits.max_head_bytes:
                self.head_error = HEAD_TOO_LARGE
        if self.head_error is not None:
            metrics.REQUESTS_REJECTED.labels("head_too_large").inc()
            self._close_with(self.head_error if self._between_requests() else None)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0
        self.edge.waiting.pop(self, None)  # a kept-alive one sending again: youngest now
        self._await_head()

    def on_url(self, url: bytes) -> None:
        if self.head_error is not None:
            return
        super().on_url(url)
        if len(self.url) > self.edge.limits.max_line_bytes:
            self.head_error = URI_TOO_LONG

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_error is not None:
            return
        if len(name) + len(value) > self.edge.limits.max_line_bytes:
            self.head_error = HEAD_TOO_LARGE
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        self.head_bytes = 0
        self.edge.waiting.pop(self, None)
        if self.head_error is None:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.head_error is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.head_error is None:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.address is not None and self._between_requests():
            self.edge.waiting[self] = None  # an idle keep-alive: first to go when full
