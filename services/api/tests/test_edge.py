"""The gateway at the internet's edge, from the attacker's side: a real `esteira api` process on
loopback, sockets that send half a request, huge heads, bodies without a key. Attackers use
their own loopback addresses (127.0.0.x), so the per-address limits can be told apart from the
callers' (127.0.0.1)."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from esteira_api.apikeys import generate_key, key_digest
from esteira_api.edge import SWEEP_BUDGET
from esteira_cli.processes import ManagedProcess, free_port
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade

pytestmark = pytest.mark.integration
KEY = generate_key()
PARTIAL_HEAD = b"GET /livez HTTP/1.1\r\nHost: x\r\n"
SESSIONS = "/api/v1/ruptura/sessions"


@dataclass
class Gateway:
    port: int
    process: ManagedProcess

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        sock = socket.socket()
        sock.settimeout(20)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", self.port))
        return sock

    def client(self, source: str = "127.0.0.1", key: str | None = KEY) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"} if key else {},
            transport=httpx.HTTPTransport(local_address=source),
            timeout=20,
        )

    def rejected(self, reason: str) -> float:
        prefix = f'esteira_requests_rejected_total{{reason="{reason}"}} '
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            if line.startswith(prefix):
                return float(line.removeprefix(prefix))
        return 0.0

    def cpu_seconds(self) -> float:
        """User + system CPU of the gateway process so far, from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def start_gateway(esteira_processes, redis_url, tmp_path) -> Iterator:
    database_url = f"sqlite:///{tmp_path / 'edge.db'}"
    engine = create_db_engine(database_url)
    upgrade(engine.url)
    engine.dispose()

    def start(**env: str) -> Gateway:
        port = free_port()
        process = esteira_processes(
            "api",
            ["api", "--port", str(port)],
            {
                "ESTEIRA_REDIS_URL": redis_url,
                "ESTEIRA_DATABASE_URL": database_url,
                "ESTEIRA_API_KEYS": f"vendas:{key_digest(KEY)}",
                "ESTEIRA_LOG_LEVEL": "WARNING",
                **env,
            },
            port=port,
        )
        return Gateway(port, process.process)

    yield start


def _answer(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_thousands_of_idle_partial_requests_do_not_lock_callers_out(start_gateway) -> None:
    gateway = start_gateway(
        ESTEIRA_API_MAX_CONNECTIONS="500", ESTEIRA_API_HEADER_TIMEOUT_SECONDS="3"
    )
    idle = []
    for n in range(2000):  # 20 addresses, 100 sockets each: under the per-address cap
        sock = gateway.connect(f"127.0.0.{10 + n % 20}")
        sock.sendall(PARTIAL_HEAD)
        idle.append(sock)
    try:
        with gateway.client() as caller:
            assert caller.get("/livez").status_code == 200
            assert caller.get("/api/v1/queues").status_code == 200
        # Each of the 2,000 was closed to make room, closed at its deadline, or is held: at
        # most 500 are held.
        closed = gateway.rejected("idle_evicted") + gateway.rejected("header_timeout")
        assert closed >= 1500
        # The last ones, still held, get 408 at the head deadline.
        assert _answer(idle[-1]).startswith(b"HTTP/1.1 408 ")
        assert gateway.rejected("header_timeout") >= 1
    finally:
        for sock in idle:
            sock.close()


def test_partial_requests_all_get_their_408_even_when_they_expire_together(start_gateway) -> None:
    gateway = start_gateway(ESTEIRA_API_HEADER_TIMEOUT_SECONDS="1")
    # More than one sweep closes at once: the sweep goes on where it stopped.
    idle = [gateway.connect(f"127.0.0.{10 + n % 4}") for n in range(3 * SWEEP_BUDGET)]
    try:
        for sock in idle:
            sock.sendall(PARTIAL_HEAD)
        answers = [_answer(sock) for sock in idle]
        assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)
        assert gateway.rejected("header_timeout") == len(idle)
    finally:
        for sock in idle:
            sock.close()


def test_a_head_that_arrives_in_pieces_is_served(start_gateway) -> None:
    gateway = start_gateway()
    sock = gateway.connect()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for byte in head:  # the empty line that ends the head split across reads, too
        sock.sendall(bytes([byte]))
    answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b'{"status":"alive"}')


def test_a_kept_alive_connection_gets_a_deadline_for_its_next_head(start_gateway) -> None:
    gateway = start_gateway(ESTEIRA_API_HEADER_TIMEOUT_SECONDS="1")
    sock = gateway.connect()
    sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while not first.endswith(b'{"status":"alive"}'):  # the head and body may come apart
        first += sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 ")
    sock.sendall(PARTIAL_HEAD)  # the next request, half sent
    assert _answer(sock).startswith(b"HTTP/1.1 408 ")
    assert gateway.rejected("header_timeout") == 1


def test_a_gateway_told_to_stop_does_not_wait_for_half_sent_heads(start_gateway) -> None:
    gateway = start_gateway(ESTEIRA_API_HEADER_TIMEOUT_SECONDS="600")
    idle = [gateway.connect() for _ in range(20)]
    for sock in idle:
        sock.sendall(PARTIAL_HEAD)
    with gateway.client() as caller:  # all 20 are counted in before the signal
        assert caller.get("/livez").status_code == 200
    gateway.process.signal_group(signal.SIGTERM)
    # Stopped, not stuck waiting for them (uvicorn re-raises the signal once it has stopped).
    assert gateway.process.wait(timeout=30) == -signal.SIGTERM
    for sock in idle:
        assert _answer(sock) == b""  # closed, with nothing to answer
        sock.close()


def test_one_address_holds_only_so_many_connections(start_gateway) -> None:
    gateway = start_gateway(
        ESTEIRA_API_MAX_CONNECTIONS_PER_ADDRESS="20", ESTEIRA_API_HEADER_TIMEOUT_SECONDS="120"
    )
    held = [gateway.connect("127.0.0.5") for _ in range(20)]
    try:
        one_more = gateway.connect("127.0.0.5")
        one_more.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _answer(one_more)
        assert answer.startswith(b"HTTP/1.1 429 ")
        assert b"retry-after: 1" in answer and b"too_many_connections" in answer
        with gateway.client("127.0.0.6") as other:
            assert other.get("/livez").status_code == 200
        assert gateway.rejected("too_many_connections") == 1
    finally:
        for sock in held:
            sock.close()


def test_a_huge_head_is_refused_as_it_arrives(start_gateway) -> None:
    gateway = start_gateway()
    long_url = gateway.connect()
    long_url.sendall(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n")
    assert _answer(long_url).startswith(b"HTTP/1.1 414 ")

    # 100 MiB of header lines: the gateway closes the connection long before they are sent.
    endless = gateway.connect()
    endless.sendall(b"GET /livez HTTP/1.1\r\n")
    lines = b"X-Filler: " + b"y" * 1000 + b"\r\n"
    with pytest.raises(OSError):  # broken pipe or reset: nobody is reading any more
        for _ in range(100 * 1024):
            endless.sendall(lines)
    assert gateway.rejected("head_too_large") == 2
    with gateway.client() as caller:
        assert caller.get("/livez").status_code == 200


def test_a_body_without_a_key_is_refused_before_it_is_sent(start_gateway) -> None:
    gateway = start_gateway()
    sock = gateway.connect()
    sock.sendall(
        b"POST " + SESSIONS.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n" + b"[[]," * 256
    )
    # 1 KiB of the 2 MiB sent, and the answer is already there.
    head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 401 ")
    sock.close()


def test_bodies_without_a_key_cost_the_gateway_next_to_nothing(start_gateway) -> None:
    gateway = start_gateway(ESTEIRA_AUTH_REFUSAL_BURST="1000")
    body = b"[" + b"[]," * (2 * 1024 * 1024 // 3 - 2) + b"[]]"  # 2 MiB of [[],[],...]: slow JSON
    before = gateway.cpu_seconds()
    with gateway.client(key=None) as anonymous:
        for _ in range(30):
            response = anonymous.post(
                SESSIONS, content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 401
    # Parsed, 30 such bodies took 20-30 s of CPU; refused unread, a small fraction of one.
    assert gateway.cpu_seconds() - before < 3


def test_refusals_are_rate_limited_per_address_and_counted(start_gateway) -> None:
    gateway = start_gateway(ESTEIRA_AUTH_REFUSAL_BURST="5", ESTEIRA_AUTH_REFUSALS_PER_SECOND="0.01")
    with gateway.client("127.0.0.7", key="esk_guess") as guesser:
        codes = [guesser.get("/api/v1/queues").status_code for _ in range(8)]
        assert codes == [401] * 5 + [429] * 3
        refused = guesser.get("/api/v1/queues")
        assert refused.json()["error"]["code"] == "too_many_refusals"
        assert int(refused.headers["retry-after"]) >= 1
        # A partial JSON body without a key is refused, not parsed (no 422).
        assert guesser.post(SESSIONS, content=b'{"pedidos": [1,').status_code == 429
    with gateway.client("127.0.0.8", key=None) as other:
        assert other.post(SESSIONS, content=b'{"pedidos": [1,').status_code == 401
    with gateway.client("127.0.0.7") as keyed:  # a valid key from the same address
        assert keyed.get("/api/v1/queues").status_code == 200
    assert gateway.rejected("too_many_refusals") == 5
    assert gateway.rejected("invalid_api_key") == 5
    assert gateway.rejected("unauthenticated") == 1
