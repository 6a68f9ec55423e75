"""The gateway's own edge: what an ingress would otherwise do for it, in uvicorn's HTTP protocol.

uvicorn (httptools) has no deadline for a request head, no cap on its size and no cap on
connections, so a client that opens sockets and sends half a head holds them for ever. Here a
new connection is first a `HeadGuard`, a small object that only counts the connection in and
collects its first request head; once the head is whole it hands the connection over to
uvicorn's protocol (`EdgeProtocol`), which keeps the same deadlines and caps for the heads that
follow on a kept-alive connection. A socket that never finishes its head (the bulk of an
attack) thus never costs uvicorn's per-connection set-up (a parser, a request scope, three
socket look-ups, a dozen objects for the garbage collector to walk). Per gateway process:

- a **head deadline**: a connection that has not sent a complete request head
  `ESTEIRA_API_HEADER_TIMEOUT_SECONDS` after it opened (or after the head's first byte, on a
  kept-alive connection) gets 408 and is closed; an idle kept-alive connection is closed after
  `ESTEIRA_API_KEEP_ALIVE_SECONDS` (uvicorn's own timer);
- a **head size cap**: a request line over `ESTEIRA_API_MAX_LINE_BYTES` gets 414, a header line
  over it or a head over `ESTEIRA_API_MAX_HEAD_BYTES` 431, and the connection is closed, as soon
  as the bytes received say so (a head is never buffered past its cap);
- a **connection cap per client address** (`ESTEIRA_API_MAX_CONNECTIONS_PER_ADDRESS`): one more
  is answered 429 at once, before anything is read, and closed;
- a **connection cap in total** (`ESTEIRA_API_MAX_CONNECTIONS`, kept under the open-file
  limit): one more closes the connection that has waited longest without a request in progress
  (a half-sent head or an idle keep-alive), so sockets that do nothing cannot crowd out callers
  that do something; only when every connection is serving a request is the newcomer answered
  503 with Retry-After.

Each refusal is counted in `esteira_requests_rejected_total{reason}` (`too_many_connections`,
`server_busy`, `idle_evicted`, `header_timeout`, `head_too_large`).

Head deadlines are not a timer each: all connections wait the same time, so the order they
started waiting in is the order they expire in, and one sweep a tick closes the expired ones
from the front, at most `SWEEP_BUDGET` before it lets the loop serve others. Thousands of
sockets opened in the same second thus expire in slices instead of stalling the loop at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Protocol, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from esteira_api.settings import ApiSettings, get_settings
from esteira_core import metrics

logger = logging.getLogger(__name__)

# A refused connection is closed once the client's first bytes are in (so the kernel closes it
# with a FIN and the client reads the answer) or after this long, whichever is first; beyond
# LINGERING_MAX refusals at once, at once.
LINGER_SECONDS = 1.0
LINGERING_MAX = 256
# How often the head deadlines are swept (a deadline is kept to within this), and how many
# connections one sweep closes before it lets the loop serve others.
SWEEP_SECONDS = 0.1
SWEEP_BUDGET = 128

_HEADER_TIMEOUTS = metrics.REQUESTS_REJECTED.labels("header_timeout")
_HEADS_TOO_LARGE = metrics.REQUESTS_REJECTED.labels("head_too_large")
_IDLE_EVICTIONS = metrics.REQUESTS_REJECTED.labels("idle_evicted")


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


class Connection(Protocol):
    """A counted-in connection, in either stage (`HeadGuard`, `EdgeProtocol`)."""

    def evict(self) -> None: ...

    def head_timed_out(self) -> None: ...


@dataclass
class Edge:
    """One gateway process's connections: how many per address; which are waiting for a
    request, oldest first, the ones closed first when full; and which are waiting for a head,
    with their deadlines, in the order they expire (every head has the same time)."""

    limits: EdgeLimits
    open: int = 0
    per_address: dict[str, int] = field(default_factory=dict)
    waiting: OrderedDict[Connection, None] = field(default_factory=OrderedDict)
    heads: OrderedDict[Connection, float] = field(default_factory=OrderedDict)
    sweep_timer: asyncio.TimerHandle | None = None
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
            _IDLE_EVICTIONS.inc()
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

    def await_head(
        self, connection: Connection, loop: asyncio.AbstractEventLoop, deadline: float = 0.0
    ) -> None:
        """Starts the connection's head deadline (or carries over the one it had)."""
        self.heads[connection] = deadline or loop.time() + self.limits.header_timeout
        if self.sweep_timer is None:
            self.sweep_timer = loop.call_later(SWEEP_SECONDS, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sweep_timer = None
        now = loop.time()
        for _ in range(SWEEP_BUDGET):
            if not self.heads:
                return
            connection, deadline = next(iter(self.heads.items()))
            if deadline > now:
                break
            del self.heads[connection]
            connection.head_timed_out()
        else:  # more may be due: the rest after the loop has polled its sockets once
            self.sweep_timer = loop.call_later(0, self._sweep, loop)
            return
        self.sweep_timer = loop.call_later(SWEEP_SECONDS, self._sweep, loop)


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
    """This process's edge, made on its first connection (uvicorn makes one protocol per
    connection; each worker process of `ESTEIRA_API_WORKERS` has its own limits and counts).
    The connection cap is kept under the open-file limit: a process out of files cannot even
    accept a connection to refuse it."""
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


def _peer_address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple | list) else ""


class HeadGuard(asyncio.Protocol):
    """A new connection until its first request head is whole: counted in (or refused), under
    the head deadline and caps, its bytes kept; then uvicorn's protocol takes it over. What it
    holds is what a socket that never finishes its head costs: this object and its bytes."""

    __slots__ = ("config", "server_state", "app_state", "loop", "edge", "transport", "address",
                 "head")  # fmt: skip

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # uvicorn's protocol factory calls this with what uvicorn's protocol is made from.
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()
        self.edge = process_edge()
        self.transport: asyncio.Transport | None = None
        self.address: str | None = None  # set while counted in
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not one
        address = _peer_address(transport)
        refusal = self.edge.admit(address)
        if refusal is not None:
            refused = _Refusal(self.edge, refusal, self.loop)
            transport.set_protocol(refused)
            refused.connection_made(transport)
            return
        self.transport = transport
        self.address = address
        self.server_state.connections.add(self)  # type: ignore[arg-type] # closed on shutdown
        self.edge.waiting[self] = None
        self.edge.await_head(self, self.loop)

    def data_received(self, data: bytes) -> None:
        seen = len(self.head)
        head = self.head + data
        # The head ends at its first empty line; look only where the new bytes can end one.
        start = max(0, seen - 2)
        if head.find(b"\n\r\n", start) >= 0 or head.find(b"\n\n", start) >= 0:
            self._hand_over(head)
            return
        limits = self.edge.limits
        if len(head) > limits.max_head_bytes:
            self._refuse(HEAD_TOO_LARGE)
        elif len(head) > limits.max_line_bytes and head.find(b"\n", 0, limits.max_line_bytes) < 0:
            self._refuse(URI_TOO_LONG)
        else:
            self.head = head

    def _hand_over(self, head: bytes) -> None:
        assert self.transport is not None and self.address is not None
        deadline = self.edge.heads.pop(self, 0.0)
        self.edge.waiting.pop(self, None)
        self.server_state.connections.discard(self)
        protocol = EdgeProtocol(self.config, self.server_state, self.app_state, self.loop)
        self.transport.set_protocol(protocol)
        protocol.take_over(self.transport, self.address, deadline, head)
        self.address = None

    def _refuse(self, answer: bytes) -> None:
        _HEADS_TOO_LARGE.inc()
        self._close_with(answer)

    def head_timed_out(self) -> None:
        _HEADER_TIMEOUTS.inc()
        self._close_with(HEADER_TIMEOUT)

    def evict(self) -> None:
        self._close_with(None)

    def shutdown(self) -> None:
        """uvicorn's server closes its connections so on shutdown; a half-sent head waits for
        no answer."""
        self._close_with(None)

    def _close_with(self, answer: bytes | None) -> None:
        if self.transport is None:
            return
        if answer is not None:
            self.transport.write(answer)
        self._forget()
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        self._forget()

    def _forget(self) -> None:
        if self.address is None:
            return
        self.edge.heads.pop(self, None)
        self.edge.waiting.pop(self, None)
        self.server_state.connections.discard(self)
        self.edge.release(self.address)
        self.address = None


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the edge's deadlines and caps (see the module), for a
    connection whose first head a `HeadGuard` has collected."""

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
        self.awaiting_head = False
        self.head_bytes = 0
        self.head_error: bytes | None = None

    def take_over(
        self, transport: asyncio.Transport, address: str, deadline: float, head: bytes
    ) -> None:
        """The connection from its guard: counted in already, its head deadline running, its
        first head (whole) received."""
        super().connection_made(transport)
        self.address = address
        self._await_head(deadline)
        self.data_received(head)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def _forget(self) -> None:
        self._stop_head_deadline()
        self.edge.waiting.pop(self, None)
        if self.address is not None:
            self.edge.release(self.address)
            self.address = None

    def evict(self) -> None:
        """Closed to make room: it was waiting for a request the longest."""
        self._forget()
        self.transport.close()

    # --- the head deadline ----------------------------------------------------------------
    def _await_head(self, deadline: float = 0.0) -> None:
        self.edge.waiting[self] = None
        if not self.awaiting_head:
            self.awaiting_head = True
            self.edge.await_head(self, self.loop, deadline)

    def _stop_head_deadline(self) -> None:
        if self.awaiting_head:
            self.awaiting_head = False
            self.edge.heads.pop(self, None)

    def head_timed_out(self) -> None:
        self.awaiting_head = False
        _HEADER_TIMEOUTS.inc()
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
        if self.head_error is None and self.awaiting_head:
            # Still inside a head after these bytes (a chunk that also ends a body is counted
            # whole: the cap errs by one read at most, for a pipelining client).
            self.head_bytes += len(data)
            if self.head_bytes > self.edge.limits.max_head_bytes:
                self.head_error = HEAD_TOO_LARGE
        if self.head_error is not None:
            _HEADS_TOO_LARGE.inc()
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
        self._stop_head_deadline()
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
