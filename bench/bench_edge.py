"""`python -m bench edge`: the gateway at the internet's edge, without an ingress in front.

Two parts, each on a real `esteira api` process on loopback:

1. **Cost per request** of the edge (esteira_api.edge, uvicorn's httptools protocol with a head
   deadline, head caps and connection caps) against uvicorn's plain httptools protocol, the
   same app, both gateways running side by side and measured in alternating rounds: the
   gateway's CPU time (from /proc) per request, for `/livez` and an authenticated
   `GET /api/v1/queues` on kept-alive connections, and for `/livez` on a new connection each.
2. **The attack** of the issue, at once: ATTACK_SOCKETS sockets that each send
   `GET /livez HTTP/1.1\\r\\nHost: x\\r\\n` and nothing more (from ATTACK_ADDRESSES loopback
   addresses; a socket the gateway drops is opened again after REOPEN_SECONDS, so the pressure
   stays), and BODY_CLIENTS clients posting 2 MiB bodies of `[[],[],…]` without a key in a
   loop; meanwhile a caller on 127.0.0.1 asks `/livez` and an authenticated `GET
   /api/v1/queues`, each on a new connection, every PROBE_INTERVAL seconds for
   MEASURE_SECONDS. Reported: the caller's p50 / p99 / max and errors, and what the gateway
   refused or closed.

Everything is on 127.0.0.1 (the attackers on other 127.x addresses), bounded in count and time.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from esteira_api.apikeys import generate_key, key_digest
from esteira_cli.processes import ManagedProcess, free_port
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_testing.components import RedisServer

ATTACK_SOCKETS = 20_000
ATTACK_ADDRESSES = 100  # 200 sockets each: under the per-address cap, so the total cap works
REOPEN_SECONDS = 5.0
BODY_CLIENTS = 8
BODY = b"[" + b"[]," * (2 * 1024 * 1024 // 3 - 1) + b"[]]"
RAMP_SECONDS = 20.0  # time for the attacker to open its sockets before the measure
MEASURE_SECONDS = 30.0
TAIL_SECONDS = 5.0  # the attack goes on this long after the measure: never measured winding down
QUIET_SECONDS = 10.0  # the caller alone first: what this machine gives without the attack
PROBE_INTERVAL = 0.05
COST_ROUNDS = 5
COST_REQUESTS = 2000
PROTOCOL_REQUESTS = 20_000
PARTIAL_HEAD = b"GET /livez HTTP/1.1\r\nHost: x\r\n"
KEY = generate_key()
ATTACK_PROCESSES = 2  # 10,000 sockets each: one process may hold only so many open files

# uvicorn as the gateway ran before, and as it runs now (esteira_api.__main__).
SERVER = """
import sys, uvicorn
from esteira_api.edge import HeadGuard
uvicorn.run("esteira_api.main:create_app", factory=True, host="127.0.0.1", port=int(sys.argv[1]),
            log_config=None, access_log=False, proxy_headers=True,
            http=HeadGuard if sys.argv[2] == "edge" else "httptools")
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _start(env: dict[str, str], protocol: str) -> tuple[ManagedProcess, str]:
    """A gateway on `protocol`: uvicorn's plain httptools, or "served", as `esteira api` serves
    it (python -m esteira_api: the edge, its keep-alive and open-file settings)."""
    port = free_port()
    argv = (
        [sys.executable, "-m", "esteira_api"]
        if protocol == "served"
        else [sys.executable, "-c", SERVER, str(port), protocol]
    )
    process = ManagedProcess(
        f"api-{protocol}",
        argv,
        env={**os.environ, **env, "ESTEIRA_API_HOST": "127.0.0.1", "ESTEIRA_API_PORT": str(port)},
    ).start()
    process.wait_for_port(port, timeout=60)
    return process, f"http://127.0.0.1:{port}"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- 0. the protocol alone, in process ------------------------------------------------------
class _Transport:
    """Just enough of an asyncio transport for uvicorn's protocols (and the edge's hand-over)."""

    def __init__(self, protocol: Any) -> None:
        self.closing = False
        self.protocol = protocol

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: object) -> None:
        self.protocol = protocol


async def _answer(_scope: dict[str, Any], _receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


def protocol_cost() -> dict[str, dict[str, float]]:
    """CPU microseconds of each protocol, in process, with an app that answers at once: what
    the edge adds to uvicorn's own parsing and bookkeeping, nothing else (best of 5 rounds).
    Per request on a kept-alive connection, per connection that makes one request, and per
    connection that sends half a head and goes (an attacker's)."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from esteira_api.edge import HeadGuard

    os.environ["ESTEIRA_AUTH_DISABLED"] = "true"  # for the edge's settings, in this process only
    request = b"GET /livez HTTP/1.1\r\nHost: x\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
    loop = asyncio.new_event_loop()
    config = uvicorn.Config(
        _answer, lifespan="off", log_config=None, access_log=False, proxy_headers=False
    )
    config.load()
    state = ServerState()

    def connect(protocol_class: Any) -> _Transport:
        transport = _Transport(protocol_class(config, state, {}, _loop=loop))
        transport.protocol.connection_made(transport)
        return transport

    def kept_alive(protocol_class: Any) -> float:
        transport = connect(protocol_class)
        started = time.process_time()
        for _ in range(PROTOCOL_REQUESTS):
            transport.protocol.data_received(request)
            loop.run_until_complete(asyncio.sleep(0))  # the app's task runs
        spent = time.process_time() - started
        transport.protocol.connection_lost(None)
        return spent

    def one_request_each(protocol_class: Any) -> float:
        started = time.process_time()
        for _ in range(PROTOCOL_REQUESTS):
            transport = connect(protocol_class)
            transport.protocol.data_received(request)
            loop.run_until_complete(asyncio.sleep(0))
            transport.protocol.connection_lost(None)
        return time.process_time() - started

    def half_a_head_each(protocol_class: Any) -> float:
        started = time.process_time()
        for _ in range(PROTOCOL_REQUESTS):
            transport = connect(protocol_class)
            transport.protocol.data_received(PARTIAL_HEAD)
            transport.protocol.connection_lost(None)
        loop.run_until_complete(asyncio.sleep(0))
        return time.process_time() - started

    best: dict[str, dict[str, float]] = {}
    try:
        for _ in range(5):
            for name, protocol_class in (("httptools", HttpToolsProtocol), ("edge", HeadGuard)):
                for kind, measure in (
                    ("kept alive", kept_alive),
                    ("one request each", one_request_each),
                    ("half a head each", half_a_head_each),
                ):
                    spent = measure(protocol_class) / PROTOCOL_REQUESTS * 1e6
                    row = best.setdefault(kind, {})
                    row[name] = min(row.get(name, spent), spent)
    finally:
        loop.close()
        del os.environ["ESTEIRA_AUTH_DISABLED"]
    return best


# --- 1. cost per request ----------------------------------------------------------------------
def _cost(pid: int, send: Callable[[], None]) -> float:
    """The gateway's CPU microseconds per request over COST_REQUESTS requests."""
    before = _cpu_seconds(pid)
    for _ in range(COST_REQUESTS):
        send()
    return (_cpu_seconds(pid) - before) / COST_REQUESTS * 1e6


def _exchange(stream: BinaryIO, sock: socket.socket, request: bytes) -> None:
    """One request on a kept-alive socket, its answer read whole (by its content-length)."""
    sock.sendall(request)
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    stream.read(length)


def cost_per_request(env: dict[str, str]) -> dict[str, dict[str, list[float]]]:
    """Raw sockets on the client's side, so that the client's own cost stays out of the way."""
    livez = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
    queues = f"GET /api/v1/queues HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n"
    closing = b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    results: dict[str, dict[str, list[float]]] = {}
    started = {name: _start(env, name) for name in ("httptools", "edge")}
    try:
        for _ in range(COST_ROUNDS):
            for name, (process, url) in started.items():
                port = int(url.rsplit(":", 1)[1])
                row = results.setdefault(name, {})
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    stream = sock.makefile("rb")
                    _exchange(stream, sock, livez)
                    row.setdefault("livez", []).append(
                        _cost(process.pid, lambda f=stream, k=sock: _exchange(f, k, livez))
                    )
                    row.setdefault("queues", []).append(
                        _cost(
                            process.pid, lambda f=stream, k=sock: _exchange(f, k, queues.encode())
                        )
                    )

                def new_connection(port: int = port) -> None:
                    with socket.create_connection(("127.0.0.1", port)) as fresh:
                        fresh.sendall(closing)
                        while fresh.recv(65536):
                            pass

                row.setdefault("new connection", []).append(_cost(process.pid, new_connection))
    finally:
        for process, _url in started.values():
            process.stop()
    return results


# --- 2. the attack ----------------------------------------------------------------------------
async def _hold(port: int, address: str, until: float, opened: list[int]) -> None:
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(address, 0)
            )
            opened[0] += 1
            writer.write(PARTIAL_HEAD)
            await asyncio.wait_for(reader.read(), max(0.1, until - time.monotonic()))
            writer.close()
        except (TimeoutError, OSError):
            pass
        await asyncio.sleep(REOPEN_SECONDS)


async def _post_bodies(port: int, address: str, until: float, answers: dict[int, int]) -> None:
    head = (
        f"POST /api/v1/ruptura/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
        f"\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode()
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(address, 0)
            )
            writer.write(head + BODY)  # the whole body, as a client that never looks does
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            answers[status] = answers.get(status, 0) + 1
            writer.close()
        except (OSError, IndexError, ValueError):
            answers[0] = answers.get(0, 0) + 1
            await asyncio.sleep(0.1)


def _attack(port: int, seconds: float, share: int, report: Any) -> None:
    """One attacker process: its share of the idle sockets, and (the first) the body clients.

    It runs at nice 10: a real attacker's CPU is its own, here it shares the gateway's two
    cores, and what is measured is the gateway's answer to the traffic, not a fight for CPU."""
    os.nice(10)

    async def run() -> None:
        until = time.monotonic() + seconds
        opened = [0]
        answers: dict[int, int] = {}
        tasks = [
            asyncio.create_task(_post_bodies(port, f"127.0.2.{n + 1}", until, answers))
            for n in range(BODY_CLIENTS if share == 0 else 0)
        ]
        for n in range(share, ATTACK_SOCKETS, ATTACK_PROCESSES):
            address = f"127.0.1.{1 + n % ATTACK_ADDRESSES}"
            tasks.append(asyncio.create_task(_hold(port, address, until, opened)))
            if n % 500 == 499:
                await asyncio.sleep(0.05)  # let the first ones connect while the rest start
        await asyncio.gather(*tasks)
        report.put({"opened": opened[0], "body_answers": answers})

    asyncio.run(run())


def _probe(client: httpx.Client, path: str, latencies: list[float], errors: list[str]) -> None:
    started = time.perf_counter()
    try:
        response = client.get(path, headers={"Connection": "close"})
        if response.status_code != 200:
            errors.append(f"{path} {response.status_code}")
    except httpx.HTTPError as error:
        errors.append(f"{path} {type(error).__name__}")
    latencies.append((time.perf_counter() - started) * 1000)


def attack(env: dict[str, str]) -> dict[str, object]:
    process, url = _start(env, "served")
    port = int(url.rsplit(":", 1)[1])
    report: Any = multiprocessing.Queue()
    attackers = [
        multiprocessing.Process(
            target=_attack,
            args=(port, RAMP_SECONDS + MEASURE_SECONDS + TAIL_SECONDS, share, report),
        )
        for share in range(ATTACK_PROCESSES)
    ]
    latencies: dict[str, list[float]] = {"/livez": [], "/api/v1/queues": []}
    quiet: dict[str, list[float]] = {"/livez": [], "/api/v1/queues": []}
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {KEY}"}

    held: list[int] = []  # the gateway's open files, once a second: the attack's strength

    def measure(into: dict[str, list[float]], seconds: float) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            next_count = time.monotonic()
            deadline = next_count + seconds
            while (now := time.monotonic()) < deadline:
                if into is latencies and now >= next_count:
                    held.append(len(os.listdir(f"/proc/{process.pid}/fd")))
                    next_count += 1
                for path, measured in into.items():
                    _probe(client, path, measured, errors)
                time.sleep(PROBE_INTERVAL)

    measure(quiet, QUIET_SECONDS)  # the same caller on this machine, before the attack
    quiet_errors, errors = errors, []
    cpu_before = _cpu_seconds(process.pid)
    for attacker in attackers:
        attacker.start()
    try:
        time.sleep(RAMP_SECONDS)
        measure(latencies, MEASURE_SECONDS)
        attacking_at_end = sum(attacker.is_alive() for attacker in attackers)
        outcomes = [report.get(timeout=120) for _ in attackers]
        for attacker in attackers:
            attacker.join(30)
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
    finally:
        for attacker in attackers:
            if attacker.is_alive():
                attacker.terminate()
        cpu = _cpu_seconds(process.pid) - cpu_before
        rss = _rss_mib(process.pid)
        process.stop()
    rejected = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("esteira_requests_rejected_total{")
    }
    return {
        "latencies": latencies,
        "quiet": quiet,
        "quiet_errors": quiet_errors,
        "errors": errors,
        "held_files": held,
        "attacking_at_end": attacking_at_end,
        "rejected": rejected,
        "cpu": cpu,
        "rss": rss,
        "opened": sum(outcome["opened"] for outcome in outcomes),
        "body_answers": outcomes[0]["body_answers"] | outcomes[1]["body_answers"],
    }


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the gateway inherits it too
    workdir = Path(tempfile.mkdtemp(prefix="esteira-bench-edge-"))
    database_url = f"sqlite:///{workdir / 'edge.db'}"
    engine = create_db_engine(database_url)
    upgrade(engine.url)
    engine.dispose()
    redis = RedisServer().start()
    try:
        env = {
            "ESTEIRA_REDIS_URL": redis.url,
            "ESTEIRA_DATABASE_URL": database_url,
            "ESTEIRA_API_KEYS": f"bench:{key_digest(KEY)}",
            "ESTEIRA_AUTH_DISABLED": "false",
            "ESTEIRA_TENANT_RATE_PER_SECOND": "0",
            "ESTEIRA_LOG_LEVEL": "WARNING",
        }
        in_process = protocol_cost()
        costs = cost_per_request(env)
        result = attack(env)
        # The same attack on a gateway that parses the bodies: without keys (local demo mode)
        # a body is parsed, as every body was before the key was checked first.
        parsed = attack({**env, "ESTEIRA_AUTH_DISABLED": "true"})
    finally:
        redis.close()

    print(
        f"| gateway CPU per request (µs, median of {COST_ROUNDS} rounds) | uvicorn httptools "
        "| edge | Δ |"
    )
    print("|---|---:|---:|---:|")
    for kind in ("livez", "queues", "new connection"):
        before = statistics.median(costs["httptools"][kind])
        after = statistics.median(costs["edge"][kind])
        label = {"livez": "`/livez`, kept alive", "queues": "`GET /api/v1/queues`, kept alive",
                 "new connection": "`/livez`, a new connection each"}[kind]  # fmt: skip
        print(f"| {label} | {before:.0f} | {after:.0f} | {after - before:+.0f} |")

    for kind, row in in_process.items():
        print(
            f"| the protocol alone, in process, an app that answers at once: {kind} | "
            f"{row['httptools']:.1f} | {row['edge']:.1f} | "
            f"{row['edge'] - row['httptools']:+.1f} |"
        )

    latencies = result["latencies"]
    assert isinstance(latencies, dict)
    print()
    print(
        f"| a caller on a new connection each, {QUIET_SECONDS:.0f} s alone, then "
        f"{MEASURE_SECONDS:.0f} s during the attack ({ATTACK_SOCKETS:,} idle partial requests, "
        f"{BODY_CLIENTS} clients posting 2 MiB without a key) | requests | p50 | p99 | max |"
    )
    print("|---|---:|---:|---:|---:|")
    quiet = result["quiet"]
    assert isinstance(quiet, dict)
    for label, table in (("no attack", quiet), ("under attack", latencies)):
        for path, values in table.items():
            print(
                f"| `{path}`, {label} | {len(values)} | {statistics.median(values):.1f} ms | "
                f"{_percentile(values, 0.99):.1f} ms | {max(values):.1f} ms |"
            )
    parsed_latencies = parsed["latencies"]
    assert isinstance(parsed_latencies, dict)
    for path, values in parsed_latencies.items():
        print(
            f"| `{path}`, the same attack with the bodies parsed (before: the key came after) | "
            f"{len(values)} | {statistics.median(values):.1f} ms | "
            f"{_percentile(values, 0.99):.1f} ms | {max(values):.1f} ms |"
        )
    errors = result["errors"]
    assert isinstance(errors, list)
    print()
    print("| measure | value |")
    print("|---|---:|")
    print(f"| caller errors | {len(errors)} {sorted(set(errors))[:5] if errors else ''} |")
    print(f"| caller errors, no attack | {len(result['quiet_errors'])} |")  # type: ignore[arg-type]
    print(f"| load average (1 min) at the end, this machine | {os.getloadavg()[0]:.1f} |")
    print(f"| attacker sockets opened (with reopens) | {result.get('opened', 0):,} |")
    held = result["held_files"]
    assert isinstance(held, list)
    print(
        f"| open files of the gateway during the measure, once a second: min / median / max | "
        f"{min(held):,} / {statistics.median(held):,.0f} / {max(held):,} |"
    )
    print(f"| attacker processes still attacking when the measure ended | "
          f"{result['attacking_at_end']} of {ATTACK_PROCESSES} |")  # fmt: skip
    print(f"| 2 MiB bodies answered, by status | {result.get('body_answers', {})} |")
    rejected = result["rejected"]
    assert isinstance(rejected, dict)
    for reason, count in sorted(rejected.items()):
        print(f"| refused or closed: {reason} | {count:,.0f} |")
    print(f"| gateway CPU during the run | {result['cpu']:.1f} s |")
    print(f"| gateway peak RSS | {result['rss']:.0f} MiB |")
    all_latencies = [v for values in latencies.values() for v in values]
    print(
        f"edge: p99 {_percentile(all_latencies, 0.99):.1f} ms for /livez and an authenticated "
        f"request under {ATTACK_SOCKETS:,} idle partial requests and {BODY_CLIENTS} 2 MiB "
        f"unauthenticated bodies, {len(errors)} errors"
    )


if __name__ == "__main__":
    main()
