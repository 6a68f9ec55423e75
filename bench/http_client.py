"""The load bench's HTTP/1.1 client: keep-alive connections to one server, each request on a
connection of its own at a time, its answer parsed by httptools (the parser uvicorn uses).

The load generator shares the machine's two cores with the stack it measures: whatever CPU it
spends is taken from the gateway and the workers, which in a real deployment never share
theirs with their users' browsers. aiohttp spent about a millisecond of CPU a request (its
request and response objects, header multidicts, timers), as much as the gateway spent
answering it; this client spends a fraction of that and measures the same thing: when a request
left and when its whole answer was read.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import cast

import httptools


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]  # names in lower case
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer handed to `answered`."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answered: asyncio.Future[tuple[Answer, bool]] | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A uvloop transport is a Transport in all but its class.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(error)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        answer = Answer(self.parser.get_status_code(), self.headers, b"".join(self.body))
        self.headers, self.body = {}, []
        if self.answered is not None and not self.answered.done():
            self.answered.set_result((answer, self.parser.should_keep_alive()))

    def _fail(self, error: BaseException) -> None:
        if self.answered is not None and not self.answered.done():
            self.answered.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """Requests to one server over a pool of keep-alive connections, unbounded: a request takes
    the connection idle the least time, or opens one. A connection idle `keep_alive` seconds
    is dropped before the server's own keep-alive timeout closes it under a request, as
    browsers do."""

    def __init__(self, host: str, port: int, keep_alive: float = 4.0, timeout: float = 60.0):
        self.host, self.port = host, port
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.idle: deque[_Connection] = deque()
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> Answer:
        """The whole answer; OSError when the connection fails, TimeoutError past `timeout`
        (connecting included)."""
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        head += [f"{name}: {value}\r\n".encode() for name, value in headers.items()]
        if body is not None:
            head.append(
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
            )
        head.append(b"\r\n")
        async with asyncio.timeout(self.timeout):
            connection = await self._connection()
            connection.answered = asyncio.get_running_loop().create_future()
            assert connection.transport is not None
            connection.transport.write(b"".join(head) + (body or b""))
            try:
                answer, keep_alive = await connection.answered
            except BaseException:
                connection.close()
                raise
        if keep_alive and not connection.closed:
            connection.idle_since = time.monotonic()
            self.idle.append(connection)
        else:
            connection.close()
        return answer

    async def _connection(self) -> _Connection:
        fresh_since = time.monotonic() - self.keep_alive
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed and connection.idle_since > fresh_since:
                return connection
            connection.close()
        _transport, connection = await asyncio.get_running_loop().create_connection(
            _Connection, self.host, self.port
        )
        return connection

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()
