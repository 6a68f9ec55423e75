"""`make bench-load`: the scraping seed's success metrics, ten times over, on this machine.

The whole local stack runs: PostgreSQL, Redis, the gateway (two uvicorn processes), one ruptura
worker, one scraper worker with 3 browsers, the demo portal answering 10 % of lookups with an
error. USERS virtual users (asyncio, one HTTP client) arrive over RAMP_SECONDS and each makes
one visit, the mix of the seeds' front ends:

- starts a ruptura session for 50-200 active orders and follows its results with long polls
  (`wait=20`: each answer comes with the next batch) until every result is read;
- meanwhile looks up OS numbers: one already recorded (answered from the database), one of a
  few "popular" ones many users ask for at once (coalesced into one scrape), and for one user
  in five an OS nobody asked for yet, for another one in five a number the portal does not
  know; each lookup that becomes a scrape task is followed with long polls (`since` the
  `updated_at` last seen, `wait=20`: each answer comes with the task's next change) until it
  ends, as the browser client does.

A long poll's latency is counted from the change it waited for (its total time less the wait
the gateway declares in `Server-Timing`), so a held request is measured like a plain one that
arrived at the moment of the change.

The client is aiohttp, one session for every visitor: httpx's pool spent more CPU choosing
among a thousand connections (or, one client per visitor, building a TLS context each) than
the gateway spent answering, which made the load generator the bottleneck.

Reported: per endpoint p50 / p95 / p99 latency as the client saw it, errors (any 4xx/5xx the
visit did not expect, and transport errors), sessions and lookups completed, the peak memory of
every process of the stack together (RSS summed, and PSS, which counts a shared page once),
and the scrape success rate (tasks for existing OS that ended in success; not-found numbers are
a correct answer, not a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from esteira_api.apikeys import generate_key, key_digest
from esteira_cli.processes import free_port
from esteira_portal.records import FIRST_OS
from esteira_scraping.processes import descendants, process_parents
from esteira_testing.components import EsteiraProcess, LocalStack, PostgresServer, seeded_database

USERS = int(os.environ.get("BENCH_LOAD_USERS", "1000"))
RAMP_SECONDS = 30.0
TENANTS = 10
ORDERS = 3000
LONG_POLL_SECONDS = 20
DEGRADED_POLL_SECONDS = 1.0
VISIT_TIMEOUT_SECONDS = 240.0
WINDOW_SECONDS = 10.0
PSS_EVERY_SAMPLES = 5
RECORDED_OS = [str(FIRST_OS + i) for i in range(20)]  # scraped before the load starts
POPULAR_OS = [str(FIRST_OS + 100 + i) for i in range(20)]
FRESH_OS_START = FIRST_OS + 1000
UNKNOWN_OS_START = 9_000_000  # the portal holds 5,000 records from FIRST_OS
# In a cluster each component has its own pod, and a pod's CPU request becomes the CPU weight
# of its cgroup: a worker pod busy on every core cannot take the gateway's share. Here all
# share two cores, so each worker runs in a cgroup of its own with the weight of its chart
# request (cpu.shares 256 = 250m, as Kubernetes maps it), when this machine lets us make one;
# else at nice 10, which is weaker (nice weighs threads, and Chromium has dozens). And run as
# root, Chromium raises the priority of its own threads (nice -8); in a pod (non-root, every
# capability dropped) it cannot, so the workers run here without CAP_SYS_NICE, as there.
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
WORKER_CPU_SHARES = 256
WITHOUT_SYS_NICE = ("setpriv", "--bounding-set", "-sys_nice", "--") if os.geteuid() == 0 else ()


class PodCpu:
    """A cgroup (v1 cpu controller) per worker, weighted like its pod; nice 10 without one."""

    def __init__(self) -> None:
        self.groups: list[Path] = []
        self.available = os.access(CGROUP_CPU, os.W_OK)

    def wrapper(self) -> tuple[str, ...]:
        return WITHOUT_SYS_NICE if self.available else (*WITHOUT_SYS_NICE, "nice", "-n", "10")

    def place(self, name: str, pid: int) -> None:
        """Moves a started worker (and so every process it starts later) into its group."""
        if not self.available:
            return
        group = CGROUP_CPU / f"esteira-bench-{name}-{os.getpid()}"
        group.mkdir()
        (group / "cpu.shares").write_text(str(WORKER_CPU_SHARES))
        (group / "cgroup.procs").write_text(str(pid))
        self.groups.append(group)

    def remove(self) -> None:
        for group in self.groups:
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (CGROUP_CPU / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                group.rmdir()


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (answered at, latency)
    started: float = 0.0
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
        self,
        client: aiohttp.ClientSession,
        key: str,
        orders: list[str],
        results: Results,
        index: int,
    ) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}
        self.orders = orders
        self.results = results
        self.index = index
        self.random = random.Random(index)

    async def request(
        self, endpoint: str, method: str, url: str, expect: tuple[int, ...] = (200,), **kwargs
    ) -> tuple[int, dict] | None:
        """The status and JSON body of an expected answer; None (an error counted) otherwise."""
        started = time.perf_counter()
        try:
            async with self.client.request(method, url, headers=self.headers, **kwargs) as answer:
                body = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.results.error(endpoint, f"{type(exc).__name__}: {exc}")
            return None
        answered = time.perf_counter()
        # A long poll's latency is the time it took beyond the wait for a change the gateway
        # declares (Server-Timing: wait;dur=<ms>): the time from the change to the answer.
        latency = answered - started - _declared_wait(answer.headers.get("Server-Timing", ""))
        self.results.latencies[endpoint].append(latency)
        self.results.timeline.append((answered, latency))
        if answer.status not in expect:
            self.results.error(endpoint, f"{answer.status} {body[:200]!r}")
            return None
        return answer.status, orjson.loads(body)

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
        results_url = started[1]["results_url"].split("?")[0]
        offset, received = 0, 0
        while True:
            page = await self.request(
                "GET /ruptura/sessions/{id}/results",
                "GET",
                f"{results_url}?offset={offset}&wait={LONG_POLL_SECONDS}",
            )
            if page is None:
                return
            body = page[1]
            received += len(body["results"])
            offset = body["next_offset"]
            if body["done"]:
                if received == len(wanted):
                    self.results.sessions_completed += 1
                else:
                    self.results.error("session", f"{received} results for {len(wanted)} orders")
                return
            if not body["results"]:  # the gateway could not hold the answer: as a browser would
                await asyncio.sleep(DEGRADED_POLL_SECONDS)

    async def look_up(self, number: str) -> None:
        found = await self.request(
            "POST /scraping/os/{n}", "POST", f"/api/v1/scraping/os/{number}", expect=(200, 202)
        )
        if found is None:
            return
        code, body = found
        if code == 200:
            self.results.lookups_completed += 1
            return
        known = int(number) < UNKNOWN_OS_START
        since = ""
        while True:
            task = await self.request(
                "GET /scraping/tasks/{id}",
                "GET",
                f"/api/v1/scraping/tasks/{body['task_id']}?wait={LONG_POLL_SECONDS}{since}",
            )
            if task is None:
                return
            if since == f"&since={task[1]['updated_at']!r}":  # unchanged: the gateway could not
                await asyncio.sleep(DEGRADED_POLL_SECONDS)  # hold the answer, as a browser would
            since = f"&since={task[1]['updated_at']!r}"
            status = task[1]["status"]
            if status in ("success", "failed"):
                self.results.lookups_completed += 1
                if known:
                    self.results.scrapes[status] += 1
                elif status != "failed" or task[1]["error"]["code"] != "not_found":
                    self.results.error("unknown OS", f"ended {status}: {task[1]}")
                return


class StackSampler:
    """Samples every process of the stack (each named root and its descendants): the memory of
    all together, and the CPU time each root's tree has used since the load began."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.peak_rss_kib = 0
        self.peak_pss_kib = 0
        self._cpu_at_start = {name: _tree_cpu_seconds(pid) for name, pid in roots.items()}
        self.cpu_seconds: dict[str, float] = {}
        # (when, CPU seconds used by the stack and the load generator together since the start)
        self.cpu_timeline: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StackSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        samples = 0
        while not self._stop.wait(1.0):
            parents = process_parents()
            pids = set()
            for name, root in self.roots.items():
                tree = [root, *descendants(root, parents)]
                pids.update(tree)
                used = _tree_cpu_seconds(root, tree) - self._cpu_at_start[name]
                self.cpu_seconds[name] = max(self.cpu_seconds.get(name, 0.0), used)
            everything = sum(self.cpu_seconds.values()) + time.process_time()
            self.cpu_timeline.append((time.perf_counter(), everything))
            rss = sum(_field_kib(Path(f"/proc/{pid}/status"), "VmRSS:") for pid in pids)
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            # PSS makes the kernel walk every page table: it is read less often.
            if samples % PSS_EVERY_SAMPLES == 0:
                pss = sum(_field_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss:") for pid in pids)
                self.peak_pss_kib = max(self.peak_pss_kib, pss)
            samples += 1


def _tree_cpu_seconds(root: int, tree: list[int] | None = None) -> float:
    """CPU time of a process, its live descendants (`tree`, when known) and the children it
    has reaped."""
    ticks = 0
    for pid in tree or (root, *descendants(root)):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # utime, stime, and for the root the reaped children's cutime, cstime
        ticks += sum(int(value) for value in fields[11 : 15 if pid == root else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


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
    # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes them under
    # a request, as browsers do.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as client:
        visitors = [
            Visitor(client, keys[index % len(keys)], orders, results, index)
            for index in range(USERS)
        ]
        started = results.started = time.perf_counter()
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
    keys = [generate_key() for _ in range(TENANTS)]
    portal_port = free_port()
    pods = PodCpu()
    postgres = PostgresServer().start()
    portal = EsteiraProcess(
        "portal",
        ["portal", "--port", str(portal_port)],
        {"ESTEIRA_LOG_LEVEL": "WARNING", "ESTEIRA_PORTAL_LATENCY_MS": "100"},
        workdir,
    )
    try:
        database_url = seeded_database(postgres.create_database(), orders=ORDERS, products=300)
        portal.start(portal_port)
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
            # Two uvicorn processes: one gateway process uses at most one of the two cores.
            ESTEIRA_API_WORKERS="2",
            # A thousand users from one loopback address: no cap on connections per address.
            ESTEIRA_API_MAX_CONNECTIONS_PER_ADDRESS="0",
            **{k: v for k, v in os.environ.items() if k.startswith("ESTEIRA_")},
        ) as stack:
            for pool in ("ruptura", "scraper"):
                worker = stack.worker(pool, wrapper=pods.wrapper())
                pods.place(pool, worker.process.pid)
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
            roots = {p.process.name: p.process.pid for p in (*stack.processes, portal)}
            roots["redis"] = stack.redis.process.pid if stack.redis.process else 0
            roots["postgresql"] = postgres.pid() or 0
            with StackSampler({n: pid for n, pid in roots.items() if pid}) as memory:
                results, elapsed = asyncio.run(_load(base_url, keys, orders))
            portal_stats = httpx.get(f"http://127.0.0.1:{portal_port}/admin/stats").json()
            server = httpx.get(f"{base_url}/metrics").text
    finally:
        portal.stop()
        postgres.close()
        pods.remove()

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
    print()
    print("The gateway's own view (its latency histogram; quantiles are bucket bounds):\n")
    print("| route | requests | p50 ≤ ms | p99 ≤ ms |")
    print("|---|---:|---:|---:|")
    for route, (count, p50, p99) in sorted(_server_quantiles(server).items()):
        print(f"| {route} | {count:.0f} | {p50 * 1000:.0f} | {p99 * 1000:.0f} |")
    print()
    print(
        f"Over time (requests answered in each {WINDOW_SECONDS:.0f} s since the first arrival;"
        " cores: CPU used by the stack and the load generator together):\n"
    )
    print("| seconds | requests | p50 ms | p99 ms | cores busy |")
    print("|---|---:|---:|---:|---:|")
    windows: dict[int, list[float]] = defaultdict(list)
    for answered, latency in results.timeline:
        windows[int((answered - results.started) // WINDOW_SECONDS)].append(latency)
    for window, values in sorted(windows.items()):
        start = results.started + window * WINDOW_SECONDS
        span = f"{window * WINDOW_SECONDS:.0f}-{(window + 1) * WINDOW_SECONDS:.0f}"
        cells = f"{_quantile(values, 0.5):.0f} | {_quantile(values, 0.99):.0f}"
        cores = _cores_busy(memory.cpu_timeline, start, start + WINDOW_SECONDS)
        print(f"| {span} | {len(values)} | {cells} | {cores:.2f} |")
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
    print(
        f"| worker CPU weight | {'cgroup cpu.shares 256 each' if pods.available else 'nice 10'} |"
    )
    print(f"| load generator (this process) CPU | {time.process_time():.0f} s |")
    for name, seconds in sorted(memory.cpu_seconds.items(), key=lambda item: -item[1]):
        print(f"| CPU used by {name} and its children | {seconds:.0f} s |")
    for sample in results.error_samples:
        print(f"error: {sample}")
    print(
        f"load: {USERS} users, p99 {p99:.0f} ms, {errors} errors, "
        f"{results_gib(memory.peak_rss_kib):.2f} GiB peak RSS, {success:.1f}% scrape success"
    )


def _cores_busy(timeline: list[tuple[float, float]], start: float, end: float) -> float:
    """The CPU the timeline's samples show used between two moments, in cores."""
    inside = [sample for sample in timeline if start <= sample[0] <= end]
    if len(inside) < 2:
        return 0.0
    (first_at, first_cpu), (last_at, last_cpu) = inside[0], inside[-1]
    return (last_cpu - first_cpu) / (last_at - first_at)


def _server_quantiles(exposition: str) -> dict[str, tuple[float, float, float]]:
    """Per route: requests, and the upper bounds of the buckets holding the median and p99."""
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(exposition):
        if family.name != "esteira_http_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels["route"].startswith("/api/"):
                route = f"{sample.labels['method']} {sample.labels['route']}"
                buckets[route][float(sample.labels["le"])] += sample.value
    found = {}
    for route, cumulative in buckets.items():
        bounds = sorted(cumulative)
        total = cumulative[bounds[-1]]
        found[route] = (
            total,
            next(b for b in bounds if cumulative[b] >= 0.5 * total),
            next(b for b in bounds if cumulative[b] >= 0.99 * total),
        )
    return found


def _declared_wait(server_timing: str) -> float:
    """Seconds of the `wait` metric of a Server-Timing header (0 without one)."""
    for metric in server_timing.split(","):
        name, _, parameters = metric.strip().partition(";")
        if name == "wait" and parameters.startswith("dur="):
            return float(parameters.removeprefix("dur=")) / 1000
    return 0.0


def results_gib(kib: int) -> float:
    return kib / 1024 / 1024


if __name__ == "__main__":
    main()
