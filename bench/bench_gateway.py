"""`make bench-gateway`: the gateway's CPU per authenticated request, by the kinds of request
front ends make most, against `/livez` (no key, no Redis) as the floor.

One gateway process (`esteira api`, authentication on, the tenant's rate limit taken on every
request but never reached) on a real redis-server and a SQLite carteira. For each kind, the
gateway's own CPU (user + system, read from /proc/<pid>/stat before and after) over REQUESTS
requests sent one after another on one keep-alive connection, divided by REQUESTS; its
background loops (queue health, the change listener) run meanwhile and are counted in every
kind alike. Each kind is measured ROUNDS times, rounds interleaved, and the median is kept.

With `ESTEIRA_BENCH_BASE=<git commit>` the gateway of that commit is started too (its sources
exported from git into a temporary folder, first on the PYTHONPATH), on the same Redis and
database, and every measurement is taken on both, one right after the other: the table then
compares them and the summary line says by how much the CPU per authenticated request changed.

No worker serves the queues (the grace periods are long, so the gateway does not serve them
itself either): the sessions and the lookup stay queued, and the POSTs add queued sessions,
which is what the gateway does for them anyway.
"""

import os
import statistics
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import httpx

from esteira_api.apikeys import generate_key, key_digest
from esteira_core.db import create_db_engine
from esteira_scraping.flow import ScrapedOS
from esteira_scraping.persistence import save_os
from esteira_testing.components import LocalStack, seeded_database

REQUESTS = int(os.environ.get("ESTEIRA_BENCH_REQUESTS", "2000"))
ROUNDS = 3
KEY = generate_key()
RECORDED_OS = "424242"
UNRECORDED_OS = "777777"
REFERENCE = "2026-03-02"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (its children's, if any, once reaped)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command's closing parenthesis: utime, stime, cutime, cstime are fields 12-15.
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


@dataclass
class Gateway:
    name: str
    pid: int
    client: httpx.Client


@dataclass
class Kind:
    name: str
    send: Callable[[httpx.Client], httpx.Response]
    expected: int


def exported_tree(commit: str, into: Path) -> str:
    """The sources of `commit` in `into`; the PYTHONPATH that makes a Python process import them
    before the installed (editable) packages of this tree."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        # Our own repository's archive; the "data" filter where this Python has it (Debian 12's
        # 3.11.2 has not: it came with 3.11.4).
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:
            tar.extractall(into)
    roots = [
        *sorted(into.glob("libs/*")),
        *sorted(into.glob("services/*")),
        into / "cli",
        into / "dev/portal",
    ]
    return os.pathsep.join(str(root) for root in roots if root.is_dir())


def record_os(database_url: str, numero_os: str) -> None:
    fields = {
        "numero_os": numero_os,
        "cliente": "Clínica São Camilo",
        "cnpj": "12.345.678/0001-90",
        "tipo_equipamento": "Autoclave",
        "fabricante": "Cristófoli",
        "modelo": "Vitale 21",
        "numero_serie": "CRI-1",
        "status_os": "ABERTA",
    }
    engine = create_db_engine(database_url)
    try:
        save_os(engine, ScrapedOS(numero_os, fields, [(k.upper(), v) for k, v in fields.items()]))
    finally:
        engine.dispose()


def kinds(client: httpx.Client) -> list[Kind]:
    """The requests measured, on things made for them first (a session, a scrape task)."""
    started = client.post(
        "/api/v1/ruptura/sessions",
        json={"pedidos": ["100001", "100002"], "reference_date": REFERENCE},
    )
    started.raise_for_status()
    session = f"/api/v1/ruptura/sessions/{started.json()['session_id']}"
    lookup = client.post(f"/api/v1/scraping/os/{UNRECORDED_OS}")
    lookup.raise_for_status()
    task = f"/api/v1/scraping/tasks/{lookup.json()['task_id']}"
    small_session = {"pedidos": ["100003", "100004"], "reference_date": REFERENCE}
    return [
        Kind("results poll", lambda c: c.get(f"{session}/results", params={"offset": 0}), 200),
        Kind("session status", lambda c: c.get(session), 200),
        Kind("task status", lambda c: c.get(task), 200),
        Kind("queue status", lambda c: c.get("/api/v1/queues"), 200),
        Kind("recorded OS lookup", lambda c: c.post(f"/api/v1/scraping/os/{RECORDED_OS}"), 200),
        Kind(
            "small session POST",
            lambda c: c.post("/api/v1/ruptura/sessions", json=small_session),
            202,
        ),
        Kind("/livez (floor)", lambda c: c.get("/livez"), 200),
    ]


def measure(gateway: Gateway, kind: Kind) -> float:
    """The gateway's CPU seconds per request of this kind."""
    for _ in range(20):  # warm: the route's first call builds what later calls reuse
        kind.send(gateway.client)
    before = cpu_seconds(gateway.pid)
    for _ in range(REQUESTS):
        response = kind.send(gateway.client)
        if response.status_code != kind.expected:
            raise RuntimeError(
                f"{gateway.name} {kind.name}: {response.status_code} {response.text}"
            )
    return (cpu_seconds(gateway.pid) - before) / REQUESTS


def start_gateway(stack: LocalStack, name: str, **env: str) -> Gateway:
    url = stack.gateway(**env)
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    return Gateway(name, stack.processes[-1].process.pid, client)


def main() -> None:
    base_commit = os.environ.get("ESTEIRA_BENCH_BASE", "")
    workdir = Path(tempfile.mkdtemp(prefix="esteira-bench-gateway-"))
    database_url = seeded_database(f"sqlite:///{workdir / 'gateway.db'}", orders=50, products=20)
    record_os(database_url, RECORDED_OS)
    settings = {
        "ESTEIRA_API_KEYS": f"bench:{key_digest(KEY)}",
        # Taken on every request (its Redis round trip is part of the cost), never reached.
        "ESTEIRA_TENANT_RATE_PER_SECOND": "1000000",
        "ESTEIRA_TENANT_RATE_BURST": "1000000",
        "ESTEIRA_TENANT_MAX_QUEUED_ORDERS": "10000000",
        "ESTEIRA_RUPTURA_GRACE_SECONDS": "86400",
        "ESTEIRA_SCRAPER_GRACE_SECONDS": "86400",
        "ESTEIRA_API_WORKERS": "1",
    }
    with LocalStack(workdir, database_url, **settings) as stack:
        gateways = []
        if base_commit:
            pythonpath = exported_tree(base_commit, workdir / "base")
            gateways.append(start_gateway(stack, f"base {base_commit[:10]}", PYTHONPATH=pythonpath))
        gateways.append(start_gateway(stack, "this tree"))
        measured = kinds(gateways[-1].client)
        figures: dict[tuple[str, str], list[float]] = {}
        for _ in range(ROUNDS):
            for kind in measured:
                for gateway in gateways:
                    figures.setdefault((gateway.name, kind.name), []).append(measure(gateway, kind))
        for gateway in gateways:
            gateway.client.close()
    median = {key: statistics.median(values) for key, values in figures.items()}
    report(gateways, measured, median)


def report(
    gateways: list[Gateway], measured: list[Kind], median: dict[tuple[str, str], float]
) -> None:
    names = [gateway.name for gateway in gateways]
    header = " | ".join(f"{name} ms CPU/request" for name in names)
    print(
        f"| request ({REQUESTS} each, median of {ROUNDS}) | {header} |"
        + (" ratio |" if len(names) > 1 else "")
    )
    print("|---" * (len(names) + 1 + (len(names) > 1)) + "|")
    for kind in measured:
        cells = " | ".join(f"{median[name, kind.name] * 1000:.3f}" for name in names)
        ratio = ""
        if len(names) > 1:
            ratio = f" {median[names[0], kind.name] / median[names[-1], kind.name]:.2f}x |"
        print(f"| {kind.name} | {cells} |{ratio}")
    authenticated = [kind.name for kind in measured if not kind.name.startswith("/livez")]

    def mean_ms(name: str) -> float:
        return statistics.mean(median[name, kind] for kind in authenticated) * 1000

    head = names[-1]
    line = (
        f"gateway: {mean_ms(head):.3f} ms CPU per authenticated request (mean of "
        f"{len(authenticated)} kinds), /livez {median[head, measured[-1].name] * 1000:.3f} ms"
    )
    if len(names) > 1:
        line += f"; base {mean_ms(names[0]):.3f} ms, {mean_ms(names[0]) / mean_ms(head):.2f}x less"
    print(f"\n{line}")
