"""`make bench-load`: the scraping seed's success metrics, ten times over, on this machine.

The whole local stack runs: PostgreSQL, Redis, the gateway, one ruptura worker, one scraper
worker with 3 browsers, the demo portal answering 10 % of lookups with an error. USERS virtual
users (asyncio, one HTTP client) arrive over RAMP_SECONDS and each makes one visit, the mix of
the seeds' front ends:

- starts a ruptura session for 50-200 active orders and follows it by polling its results
  every 2 s (the browser client's rhythm) until every result is read;
- meanwhile looks up OS numbers: one already recorded (answered from the database), one of a
  few "popular" ones many users ask for at once (coalesced into one scrape), and for one user
  in five an OS nobody asked for yet, for another one in five a number the portal does not
  know; each lookup that becomes a scrape task is polled every second until it ends.

Reported: per endpoint p50 / p95 / p99 latency as the client saw it, errors (any 4xx/5xx the
visit did not expect, and transport errors), sessions and lookups completed, the peak memory of
every process of the stack together (RSS summed, and PSS, which counts a shared page once),
and the scrape success rate (tasks for existing OS that ended in success; not-found numbers are
a correct answer, not a failure).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from esteira_api.apikeys import generate_key, key_digest
from esteira_core.processes import descendants, free_port
from esteira_portal.records import FIRST_OS
from esteira_testing.components import EsteiraProcess, LocalStack, PostgresServer, seeded_database

USERS = int(os.environ.get("BENCH_LOAD_USERS", "1000"))
RAMP_SECONDS = 30.0
TENANTS = 10
ORDERS = 3000
POLL_RESULTS_SECONDS = 2.0
POLL_TASK_SECONDS = 1.0
VISIT_TIMEOUT_SECONDS = 240.0
RECORDED_OS = [str(FIRST_OS + i) for i in range(20)]  # scraped before the load starts
POPULAR_OS = [str(FIRST_OS + 100 + i) for i in range(20)]
FRESH_OS_START = FIRST_OS + 1000
UNKNOWN_OS_START = 9_000_000  # the portal holds 5,000 records from FIRST_OS
# Run as root, Chromium raises the priority of its own threads (nice -8) and takes the CPU from
# every other process; in a pod (non-root, every capability dropped) it cannot. The scraper
# worker runs here without CAP_SYS_NICE, as there.
AS_IN_A_POD = ("setpriv", "--bounding-set", "-sys_nice", "--") if os.geteuid() == 0 else ()


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_samples: list[str] = field(default_factory=list)
    sessions_completed: int = 0
    lookups_completed: int = 0
    scrapes: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def error(self, endpoint: str, detail: str) -> None:
        self.errors[endpoint] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{endpoint}: {detail}")


class Visitor:
    """One user's visit."""

    def __init__(
        self, client: httpx.AsyncClient, key: str, orders: list[str], results: Results, index: int
    ) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}
        self.orders = orders
        self.results = results
        self.index = index
        self.random = random.Random(index)

    async def request(
        self, endpoint: str, method: str, url: str, expect: tuple[int, ...] = (200,), **kwargs
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await self.client.request(method, url, headers=self.headers, **kwargs)
        except httpx.HTTPError as exc:
            self.results.error(endpoint, f"{type(exc).__name__}: {exc}")
            return None
        self.results.latencies[endpoint].append(time.perf_counter() - started)
        if response.status_code not in expect:
            self.results.error(endpoint, f"{response.status_code} {response.text[:200]}")
            return None
        return response

    async def visit(self) -> None:
        await asyncio.sleep(self.random.uniform(0, RAMP_SECONDS))
        lookups = [self.random.choice(RECORDED_OS), self.random.choice(POPULAR_OS)]
        if self.index % 5 == 0:
            lookups.append(str(FRESH_OS_START + self.index))
        elif self.index % 5 == 1:
            lookups.append(str(UNKNOWN_OS_START + self.index))
        await asyncio.gather(self.analyse(), *(self.look_up(number) for number in lookups))

    async def analyse(self) -> None:
        wanted = self.random.sample(self.orders, self.random.randint(50, 200))
        started = await self.request(
            "POST /ruptura/sessions",
            "POST",
            "/api/v1/ruptura/sessions",
            expect=(202,),
            json={"pedidos": wanted},
        )
        if started is None:
            return
        results_url = started.json()["results_url"].split("?")[0]
        offset, received = 0, 0
        while True:
            await asyncio.sleep(POLL_RESULTS_SECONDS)
            page = await self.request(
                "GET /ruptura/sessions/{id}/results", "GET", f"{results_url}?offset={offset}"
            )
            if page is None:
                return
            body = page.json()
            received += len(body["results"])
            offset = body["next_offset"]
            if body["done"]:
                if received == len(wanted):
                    self.results.sessions_completed += 1
                else:
                    self.results.error("session", f"{received} results for {len(wanted)} orders")
                return

    async def look_up(self, number: str) -> None:
        found = await self.request(
            "POST /scraping/os/{n}", "POST", f"/api/v1/scraping/os/{number}", expect=(200, 202)
        )
        if found is None:
            return
        body = found.json()
        if found.status_code == 200:
            self.results.lookups_completed += 1
            return
        known = int(number) < UNKNOWN_OS_START
        while True:
            await asyncio.sleep(POLL_TASK_SECONDS)
            task = await self.request(
                "GET /scraping/tasks/{id}", "GET", f"/api/v1/scraping/tasks/{body['task_id']}"
            )
            if task is None:
                return
            status = task.json()["status"]
            if status in ("success", "failed"):
                self.results.lookups_completed += 1
                if known:
                    self.results.scrapes[status] += 1
                elif status != "failed" or task.json()["error"]["code"] != "not_found":
                    self.results.error("unknown OS", f"ended {status}: {task.json()}")
                return


class MemorySampler:
    """Samples the memory of every process of the stack (each one and its descendants)."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.peak_rss_kib = 0
        self.peak_pss_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            pids = {pid for root in self.roots for pid in (root, *descendants(root))}
            rss = pss = 0
            for pid in pids:
                rss += _field_kib(Path(f"/proc/{pid}/status"), "VmRSS:")
                pss += _field_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss:")
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.peak_pss_kib = max(self.peak_pss_kib, pss)


def _field_kib(path: Path, name: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


async def _load(base_url: str, keys: list[str], orders: list[str]) -> tuple[Results, float]:
    results = Results()
    limits = httpx.Limits(max_connections=USERS * 2, max_keepalive_connections=USERS * 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        visitors = [
            Visitor(client, keys[index % len(keys)], orders, results, index)
            for index in range(USERS)
        ]
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(visitor.visit() for visitor in visitors)),
            timeout=RAMP_SECONDS + VISIT_TIMEOUT_SECONDS,
        )
        return results, time.perf_counter() - started


def _record_os(client: httpx.Client, numbers: list[str]) -> None:
    """Scrapes the "already recorded" OS before the load, so they answer from the database."""
    pending = {client.post(f"/api/v1/scraping/os/{n}").json().get("task_id") for n in numbers}
    pending.discard(None)
    deadline = time.monotonic() + 180
    while pending:
        assert time.monotonic() < deadline, "could not record the OS the load looks up"
        for task_id in list(pending):
            if client.get(f"/api/v1/scraping/tasks/{task_id}").json()["status"] == "success":
                pending.discard(task_id)
        time.sleep(0.5)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="esteira-bench-load-"))
    postgres = PostgresServer().start()
    keys = [generate_key() for _ in range(TENANTS)]
    try:
        database_url = seeded_database(postgres.create_database(), orders=ORDERS, products=300)
        portal_port = free_port()
        portal = EsteiraProcess(
            "portal",
            ["portal", "--port", str(portal_port)],
            {"ESTEIRA_LOG_LEVEL": "WARNING", "ESTEIRA_PORTAL_LATENCY_MS": "100"},
            workdir,
        ).start(portal_port)
        with LocalStack(
            workdir,
            database_url,
            ESTEIRA_API_KEYS=",".join(f"t{i}:{key_digest(k)}" for i, k in enumerate(keys)),
            ESTEIRA_TENANT_RATE_PER_SECOND="1000",
            ESTEIRA_TENANT_RATE_BURST="2000",
            ESTEIRA_PORTAL_URL=f"http://127.0.0.1:{portal_port}",
            ESTEIRA_SCRAPE_RATE_PER_MINUTE="6000",
            ESTEIRA_SCRAPE_RATE_BURST="50",
            ESTEIRA_SCRAPE_BACKOFF_SECONDS="1",
            ESTEIRA_LOG_LEVEL="WARNING",
        ) as stack:
            stack.worker("ruptura")
            stack.worker("scraper", wrapper=AS_IN_A_POD)
            base_url = stack.gateway()
            headers = {"Authorization": f"Bearer {keys[0]}"}
            with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
                _record_os(client, RECORDED_OS)
                orders = [
                    o["num_pedido"] for o in client.get("/api/v1/ruptura/orders?limit=1000").json()
                ]
                switches = httpx.get(f"http://127.0.0.1:{portal_port}/admin/switches").json()
                httpx.put(
                    f"http://127.0.0.1:{portal_port}/admin/switches",
                    json={**switches, "error_rate": 0.1},
                ).raise_for_status()
            roots = [p.process.pid for p in (*stack.processes, portal)]
            roots += [stack.redis.process.pid] if stack.redis.process else []
            roots += [postgres.pid()] if postgres.pid() else []
            with MemorySampler([pid for pid in roots if pid]) as memory:
                results, elapsed = asyncio.run(_load(base_url, keys, orders))
            portal_stats = httpx.get(f"http://127.0.0.1:{portal_port}/admin/stats").json()
        portal.stop()
    finally:
        postgres.close()

    print(f"{USERS} users over {RAMP_SECONDS:.0f} s, all visits done in {elapsed:.0f} s\n")
    print("| endpoint | requests | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    everything: list[float] = []
    for endpoint in sorted(set(results.latencies) | set(results.errors)):
        values = results.latencies.get(endpoint, [])
        everything += values
        cells = (
            f"{_quantile(values, 0.5):.0f} | {_quantile(values, 0.95):.0f} | "
            f"{_quantile(values, 0.99):.0f}"
            if values
            else "— | — | —"
        )
        print(f"| {endpoint} | {len(values)} | {cells} | {results.errors.get(endpoint, 0)} |")
    errors = sum(results.errors.values())
    scrapes = results.scrapes["success"] + results.scrapes["failed"]
    success = 100 * results.scrapes["success"] / scrapes if scrapes else 0.0
    p99 = _quantile(everything, 0.99)
    print()
    print("| measure | value |")
    print("|---|---:|")
    print(f"| requests | {len(everything)} ({len(everything) / elapsed:.0f}/s) |")
    print(f"| median latency, all requests | {statistics.median(everything) * 1000:.0f} ms |")
    print(f"| sessions completed | {results.sessions_completed} of {USERS} |")
    print(f"| lookups completed | {results.lookups_completed} |")
    succeeded, failed = results.scrapes["success"], results.scrapes["failed"]
    print(f"| scrape tasks of existing OS: success / failed | {succeeded} / {failed} |")
    print(f"| portal lookups (10 % answered with an error) | {portal_stats.get('lookups')} |")
    print(f"| peak memory of the stack: RSS summed | {results_gib(memory.peak_rss_kib):.2f} GiB |")
    print(f"| peak memory of the stack: PSS | {results_gib(memory.peak_pss_kib):.2f} GiB |")
    for sample in results.error_samples:
        print(f"error: {sample}")
    print(
        f"load: {USERS} users, p99 {p99:.0f} ms, {errors} errors, "
        f"{results_gib(memory.peak_rss_kib):.2f} GiB peak RSS, {success:.1f}% scrape success"
    )


def results_gib(kib: int) -> float:
    return kib / 1024 / 1024


if __name__ == "__main__":
    main()
