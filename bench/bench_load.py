"""`make bench-load`: the seeds' users, two thousand by default, measured from their side.

The whole local stack runs, freshly started and not warmed up (the figures include its cold
start): PostgreSQL, Redis, the gateway (two uvicorn processes), one ruptura worker, one scraper
worker with 3 browsers; and the demo portal, answering 100 ms late and failing 10 % of lookups.
Nothing reaches the gateway or the workers before the load but the gateway's readiness probe
(a cluster sends a pod traffic only once it answers): the OS "already recorded" are written to
the database and the orders to ask for read from it, directly. Ten tenants, each
user with its tenant's API key. USERS users arrive over RAMP_SECONDS; each, as the seeds' front
ends do:

- starts a ruptura session of 40 orders and follows it to its end with long polls
  (`wait=20`: each answer comes with the next batch);
- meanwhile looks up 2-3 OS and follows each to its end: one already recorded (answered from
  the database), one of a few "popular" ones many users ask for at once (coalesced into one
  scrape), and for one user in five an OS nobody asked for yet, for another one in five a
  number the portal does not know; a lookup that becomes a scrape task is followed with long
  polls (`since` the `updated_at` last seen, `wait=20`).

Measured from the client, never from the gateway's word about itself (no Server-Timing):

- A process of the bench's own subscribes to the channels the workers publish each change on
  (a session's batch, a task's update), before the load starts, and notes when it saw each
  message. A change reaches a client when an answer carries it; change-to-client is when the
  client received that answer less when the listener saw the change published (the first
  change the client had not seen yet: the oldest, so the longest). Both clocks are this
  machine's CLOCK_MONOTONIC.
- Each request is one of three kinds, reported apart: it answered at once (a POST, a read
  without a wait, or a long poll whose change was already published when it was sent); it was
  held (its change came while it waited); or it ran out its wait with nothing new.
- End to end per user flow: a session from its POST to its last result read, a lookup from its
  POST to its result; and the lookups completed per minute (the portal and the scraper pool
  bound them).
- Every process of the stack (each uvicorn process of the gateway, each worker and its
  Chromium tree, Redis, PostgreSQL and its backends) sampled each second: their RSS summed at
  its peak, and the CPU seconds each used. The portal stands for the legacy system outside the
  stack; it and the load generator are reported apart, not summed in.

Errors: any answer the flow did not expect (a 4xx or 5xx included), transport errors, a session
with a result missing, a lookup of an unknown number that ended otherwise than "not found", and
a flow unfinished VISIT_TIMEOUT_SECONDS after its user arrived (a lost job looks like that).
A 503 `gateway_busy` is asked again after its Retry-After, up to three times, as esteira.js
does; each try is a request as the client saw it, and the retries are counted.

The client (bench.http_client) is one pool of keep-alive connections for every user, its
answers parsed by httptools: it runs on the same two cores as the stack, so every millisecond
of CPU it spends is taken from what it measures. httpx's pool spent more CPU choosing among a
thousand connections than the gateway spent answering; aiohttp about a millisecond a request,
as much as the gateway (side by side at 2,000 users: the README's Load section). Its event
loop's lag is reported, as it is part of what a client measures here.

A run takes 2-5 minutes on this machine (every flow is bounded: VISIT_TIMEOUT_SECONDS after its
user arrived); `python -m bench.bench_load --users 200` is a quick one, and BENCH_LOAD_USERS sets
the default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import httptools
import httpx
import orjson
import redis
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from bench.http_client import HttpClient
from esteira_api.apikeys import generate_key, key_digest
from esteira_cli.processes import free_port
from esteira_core import keys as redis_keys
from esteira_core.db import create_db_engine
from esteira_portal import records
from esteira_portal.settings import PortalSettings
from esteira_ruptura import data
from esteira_ruptura.sources import esteira_tables
from esteira_scraping.flow import ScrapedOS
from esteira_scraping.persistence import save_os
from esteira_scraping.processes import descendants, process_parents
from esteira_scraping.profile import load_profile
from esteira_testing.components import EsteiraProcess, LocalStack, PostgresServer, seeded_database
from esteira_testing.waiting import wait_until

USERS = int(os.environ.get("BENCH_LOAD_USERS", "2000"))
RAMP_SECONDS = 30.0
TENANTS = 10
ORDERS = 3000
SESSION_ORDERS = 40
LONG_POLL_SECONDS = 20
DEGRADED_POLL_SECONDS = 1.0
VISIT_TIMEOUT_SECONDS = 300.0
WINDOW_SECONDS = 10.0
PSS_EVERY_SAMPLES = 5
LAG_PROBE_SECONDS = 0.01
BUSY_RETRIES = 3  # esteira.js's
RECORDED_OS = [str(records.FIRST_OS + i) for i in range(20)]  # in the database before the load
POPULAR_OS = [str(records.FIRST_OS + 100 + i) for i in range(20)]
FRESH_OS_START = records.FIRST_OS + 1000
UNKNOWN_OS_START = 9_000_000  # the portal holds its records from FIRST_OS on
# How a scrape task reports the demo portal's injected error (its error_rate switch).
INJECTED_PORTAL_ERROR = "the portal answered an error: Erro interno do portal"
# In a cluster each component has its own pod, and a pod's CPU request becomes the CPU weight
# of its cgroup: a worker pod busy on every core cannot take the gateway's share. Here all
# share two cores, so each worker runs in a cgroup of its own (when this machine lets us make
# one; else at nice 10, which is weaker: nice weighs threads, and Chromium has dozens) of
# cpu.shares 256 (what Kubernetes makes of 250m), beside the gateway's two processes at 1024
# each. Weighed as the chart's requests would have them against the gateway (ruptura 1024,
# half the gateway), the workers took CPU the gateway needed during the arrivals: sessions
# ended sooner, but the p99 of requests that answer at once was 8.2 and 23.6 s against 1.9 and
# 2.2 s, side by side at 2,000 users (a third pair, with the machine far busier with other
# work: 11.5 against 22.4 s). And run as root, Chromium raises the priority of its own threads
# (nice -8); in a pod (non-root, every capability dropped) it cannot, so the workers run here
# without CAP_SYS_NICE, as there.
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
WORKER_CPU_SHARES = 256
WITHOUT_SYS_NICE = ("setpriv", "--bounding-set", "-sys_nice", "--") if os.geteuid() == 0 else ()
# Joins the cgroup whose cgroup.procs is $0, then becomes the command: all it starts is inside.
JOIN_CGROUP = ("sh", "-c", 'echo $$ > "$0" && exec "$@"')
AT_ONCE, HELD, RAN_OUT = "answered at once", "held until its change", "ran out its wait"
CHANGE = "change delivered"


class PodCpu:
    """A cgroup (v1 cpu controller) per worker, weighted like its pod; nice 10 without one."""

    def __init__(self) -> None:
        self.groups: list[Path] = []
        self.available = os.access(CGROUP_CPU, os.W_OK)

    def wrapper(self, pool: str) -> tuple[str, ...]:
        """What to start the pool's worker under: its group (made here), or nice 10."""
        if not self.available:
            return (*WITHOUT_SYS_NICE, "nice", "-n", "10")
        group = CGROUP_CPU / f"esteira-bench-{pool}-{os.getpid()}"
        group.mkdir()
        (group / "cpu.shares").write_text(str(WORKER_CPU_SHARES))
        self.groups.append(group)
        return (*JOIN_CGROUP, str(group / "cgroup.procs"), *WITHOUT_SYS_NICE)

    def remove(self) -> None:
        for group in self.groups:
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (CGROUP_CPU / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                group.rmdir()


def _listen(redis_url: str, log_path: str, ready: EventType, stop: EventType) -> None:
    """The change listener's process: every message on the change channels, with when it was
    seen, one line each (monotonic seconds, channel, message)."""
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.psubscribe(*redis_keys.CHANGE_PATTERNS)
    confirmed = 0  # once Redis confirms a pattern, no message on it is missed
    while confirmed < len(redis_keys.CHANGE_PATTERNS) and not stop.is_set():
        message = pubsub.get_message(timeout=1.0)
        confirmed += message is not None and message["type"] == "psubscribe"
    ready.set()
    with open(log_path, "wb") as log:
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.5)
            if message is not None and message["type"] == "pmessage":
                seen = time.monotonic()
                log.write(b"%r\t%s\t%s\n" % (seen, message["channel"], message["data"]))
    pubsub.close()
    client.close()


class ChangeListener:
    """The bench's own witness of when each change was published (see the module)."""

    def __init__(self, redis_url: str, workdir: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.log_path = workdir / "changes.log"
        self._ready, self._stop = context.Event(), context.Event()
        self.process = context.Process(
            target=_listen, args=(redis_url, str(self.log_path), self._ready, self._stop)
        )

    def __enter__(self) -> ChangeListener:
        self.process.start()
        if not self._ready.wait(30):
            self.__exit__()
            raise RuntimeError("the change listener did not subscribe")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self.process.join(10)

    def changes(self) -> dict[str, list[tuple[float, float]]]:
        """Per channel, (seen at, version) in order; the version is what a client compares
        with what it has: a session's results stored, a task's `updated_at` (infinite once
        it has ended)."""
        found: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for line in self.log_path.read_bytes().splitlines():
            seen, channel, message = line.split(b"\t", 2)
            if channel.startswith(redis_keys.ruptura_session("").encode()):
                version = float(orjson.loads(message)["processed"])
            elif message == b"finished":
                version = math.inf
            else:
                version = float(message)
            found[channel.decode()].append((float(seen), version))
        return found


@dataclass
class Poll:
    """One request as the client saw it; `channel`, `had` and `got` for the requests that may
    wait for a change (what the client had seen, and what the answer carried, as versions)."""

    endpoint: str
    sent: float
    received: float
    channel: str | None = None
    had: float = 0.0
    got: float = 0.0


def _ran_out(poll: Poll) -> bool:
    """Whether a long poll came back only after its whole wait (nothing changed meanwhile),
    as esteira.js tells it from one the gateway could not hold."""
    return poll.received - poll.sent >= LONG_POLL_SECONDS - 0.5


@dataclass
class Results:
    polls: list[Poll] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_samples: list[str] = field(default_factory=list)
    sessions_e2e: list[float] = field(default_factory=list)
    lookups_e2e: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lookup_ends: list[float] = field(default_factory=list)  # when each scraped lookup ended
    scrapes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    loop_lag: list[float] = field(default_factory=list)
    busy_retries: int = 0

    def error(self, what: str, detail: str) -> None:
        self.errors[what] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{what} {detail}")


class User:
    """One user of the seeds' front ends: a session followed to its end, 2-3 lookups too."""

    def __init__(
        self,
        client: HttpClient,
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
        self,
        endpoint: str,
        method: str,
        url: str,
        expect: tuple[int, ...] = (200,),
        json: Any = None,
    ) -> tuple[Poll, int, dict[str, Any]] | None:
        """The request as seen, the status and the JSON body of an expected answer; None (an
        error counted) otherwise."""
        body = None if json is None else orjson.dumps(json)
        for attempt in range(BUSY_RETRIES + 1):
            sent = time.monotonic()
            try:
                answer = await self.client.request(method, url, self.headers, body)
            except (OSError, TimeoutError, httptools.HttpParserError) as exc:
                self.results.error(f"{endpoint}: {type(exc).__name__}", str(exc))
                return None
            poll = Poll(endpoint, sent, time.monotonic())
            self.results.polls.append(poll)
            busy = answer.status == 503 and b"gateway_busy" in answer.body
            if not busy or attempt == BUSY_RETRIES:
                break
            # As esteira.js does: a gateway too busy to read Redis in time is asked again.
            self.results.busy_retries += 1
            await asyncio.sleep(float(answer.headers.get(b"retry-after", b"1")))
        if answer.status not in expect:
            self.results.error(f"{endpoint}: {answer.status}", repr(answer.body[:200]))
            return None
        return poll, answer.status, orjson.loads(answer.body)

    async def visit(self) -> None:
        await asyncio.sleep(self.random.uniform(0, RAMP_SECONDS))
        lookups = [self.random.choice(RECORDED_OS), self.random.choice(POPULAR_OS)]
        if self.index % 5 == 0:
            lookups.append(str(FRESH_OS_START + self.index))
        elif self.index % 5 == 1:
            lookups.append(str(UNKNOWN_OS_START + self.index))
        await asyncio.gather(
            self._bounded("session", self.analyse()),
            *(self._bounded("lookup", self.look_up(number)) for number in lookups),
        )

    async def _bounded(self, name: str, flow: Coroutine[None, None, None]) -> None:
        try:
            async with asyncio.timeout(VISIT_TIMEOUT_SECONDS):
                await flow
        except TimeoutError:
            self.results.error(f"{name} unfinished", f"user {self.index}")

    async def analyse(self) -> None:
        wanted = self.random.sample(self.orders, SESSION_ORDERS)
        started = await self.request(
            "POST /ruptura/sessions",
            "POST",
            "/api/v1/ruptura/sessions",
            expect=(202,),
            json={"pedidos": wanted},
        )
        if started is None:
            return
        began = started[0].sent
        session_id = started[2]["session_id"]
        channel = redis_keys.ruptura_session_events(session_id)
        results_url = started[2]["results_url"].split("?")[0]
        offset = 0
        while True:
            page = await self.request(
                "GET /ruptura/sessions/{id}/results",
                "GET",
                f"{results_url}?offset={offset}&wait={LONG_POLL_SECONDS}",
            )
            if page is None:
                return
            poll, _, body = page
            poll.channel, poll.had, poll.got = channel, offset, body["next_offset"]
            offset = body["next_offset"]
            if body["done"]:
                if offset == len(wanted):
                    self.results.sessions_e2e.append(poll.received - began)
                else:
                    self.results.error("session", f"{offset} results for {len(wanted)} orders")
                return
            if not body["results"] and not _ran_out(poll):  # the gateway could not hold it:
                await asyncio.sleep(DEGRADED_POLL_SECONDS)  # as esteira.js, wait before asking

    async def look_up(self, number: str) -> None:
        found = await self.request(
            "POST /scraping/os/{n}", "POST", f"/api/v1/scraping/os/{number}", expect=(200, 202)
        )
        if found is None:
            return
        posted, code, body = found
        if code == 200:
            self.results.lookups_e2e["from the database"].append(posted.received - posted.sent)
            return
        known = int(number) < UNKNOWN_OS_START
        self.results.scrapes["followed"] += 1  # one that never ends counts against success
        channel = redis_keys.scrape_task_events(body["task_id"])
        url = f"/api/v1/scraping/tasks/{body['task_id']}?wait={LONG_POLL_SECONDS}"
        since: float | None = None
        while True:
            seen = await self.request(
                "GET /scraping/tasks/{id}",
                "GET",
                url if since is None else f"{url}&since={since!r}",
            )
            if seen is None:
                return
            poll, _, task = seen
            ended = task["status"] in ("success", "failed")
            if since is not None:
                poll.channel, poll.had = channel, since
                poll.got = math.inf if ended else task["updated_at"]
                if poll.got == since and not _ran_out(poll):  # the gateway could not hold it:
                    await asyncio.sleep(DEGRADED_POLL_SECONDS)  # as esteira.js, wait
            since = task["updated_at"]
            if ended:
                self.results.lookups_e2e["scraped"].append(poll.received - posted.sent)
                self.results.lookup_ends.append(poll.received)
                outcome = _scrape_outcome(known, task)
                self.results.scrapes[outcome] += 1
                if outcome == "wrong":
                    self.results.error("lookup", f"ended {task['status']}: {task}")
                return


def _scrape_outcome(known: bool, task: dict[str, Any]) -> str:
    """A scrape's end: "success" when it answered what the portal holds (an unknown number's
    answer is `not_found`); "failed" when the demo portal's injected errors (10 % of lookups)
    outlasted its tries, which in about one run in ten befalls one of some 900 scrapes, against
    the success rate for any number; "wrong" otherwise, an error: a known number not found, or
    a failure that is not the portal's answer (a time limit, a page not understood)."""
    status, error = task["status"], task.get("error") or {}
    if status == "failed" and error.get("message") == INJECTED_PORTAL_ERROR:
        return "failed"
    if known:
        return "success" if status == "success" else "wrong"
    return "success" if status == "failed" and error.get("code") == "not_found" else "wrong"


class StackSampler:
    """Samples every process of the stack (each named root and its descendants) each second:
    the memory of all together, and the CPU time each root's tree used since the load began."""

    def __init__(self, roots: dict[str, int], apart: Sequence[str]) -> None:
        self.roots = roots
        self.apart = set(apart)  # sampled, not summed into the stack
        self.peak_rss_kib = 0
        self.peak_pss_kib = 0
        self.peak_rss_by_root: dict[str, int] = defaultdict(int)
        self.processes_by_root: dict[str, int] = defaultdict(int)
        self._cpu_at_start = {name: _tree_cpu_seconds(pid) for name, pid in roots.items()}
        self.cpu_seconds: dict[str, float] = {}
        # The load generator's own (this process: the users and this sampler), over the load.
        self._own_cpu_at_start = time.process_time()
        self.own_cpu_seconds = 0.0
        # (when, CPU seconds used by every sampled process and the load generator since start)
        self.cpu_timeline: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StackSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.own_cpu_seconds = time.process_time() - self._own_cpu_at_start

    def _run(self) -> None:
        samples = 0
        while not self._stop.wait(1.0):
            parents = process_parents()
            stack: set[int] = set()
            for name, root in self.roots.items():
                tree = [root, *descendants(root, parents)]
                if name not in self.apart:
                    stack.update(tree)
                used = _tree_cpu_seconds(root, tree) - self._cpu_at_start[name]
                self.cpu_seconds[name] = max(self.cpu_seconds.get(name, 0.0), used)
                rss = sum(_field_kib(Path(f"/proc/{pid}/status"), "VmRSS:") for pid in tree)
                self.peak_rss_by_root[name] = max(self.peak_rss_by_root[name], rss)
                self.processes_by_root[name] = max(self.processes_by_root[name], len(tree))
            everything = sum(self.cpu_seconds.values()) + time.process_time()
            self.cpu_timeline.append((time.monotonic(), everything))
            rss = sum(_field_kib(Path(f"/proc/{pid}/status"), "VmRSS:") for pid in stack)
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            # PSS makes the kernel walk every page table: it is read less often.
            if samples % PSS_EVERY_SAMPLES == 0:
                pss = sum(_field_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss:") for pid in stack)
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


async def _probe_loop_lag(results: Results, stop: asyncio.Event) -> None:
    """How late the load generator's event loop wakes: every client timestamp carries it."""
    while not stop.is_set():
        asked = time.monotonic()
        await asyncio.sleep(LAG_PROBE_SECONDS)
        results.loop_lag.append(time.monotonic() - asked - LAG_PROBE_SECONDS)


async def _load(base_url: str, keys: list[str], orders: list[str], users: int) -> Results:
    """Every user's visit, with the load generator's garbage collector off: its pauses stopped
    every simulated user at once, and their timestamps with them (in one run, 209 pauses, the
    longest 120 ms), which no crowd of real browsers shares. The run is bounded; its garbage
    waits for its end."""
    results = Results()
    stop_probe = asyncio.Event()
    probe = asyncio.create_task(_probe_loop_lag(results, stop_probe))
    server = httpx.URL(base_url)
    # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes them under
    # a request, as browsers do.
    client = HttpClient(server.host, server.port or 80, keep_alive=4, timeout=60)
    gc.disable()
    try:
        await asyncio.gather(
            *(
                User(client, keys[index % len(keys)], orders, results, index).visit()
                for index in range(users)
            )
        )
    finally:
        gc.enable()
        client.close()
    stop_probe.set()
    await probe
    return results


def _prepare(database_url: str) -> list[str]:
    """Writes the "already recorded" OS (what a scrape of each would write) and returns the
    active orders, straight from the database: the stack sees its first request in the load."""
    engine = create_db_engine(database_url)
    profile = load_profile()
    held = PortalSettings().records
    try:
        for number in RECORDED_OS:
            raw = records.find(number, held)
            assert raw is not None, f"the portal holds no OS {number}"
            fields = {
                profile.fields[label]: value for label, value in raw if label in profile.fields
            }
            save_os(engine, ScrapedOS(numero_os=number, fields=fields, raw=raw))
        with esteira_tables(engine).reading() as carteira:
            return [number for number, _ in data.order_summaries(carteira, 1000)]
    finally:
        engine.dispose()


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz", timeout=30).status_code == 200
    except httpx.TransportError:
        return False


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


def _quantiles(values: Sequence[float], unit: float = 1000) -> str:
    """p50 | p95 | p99 table cells, in milliseconds (or seconds, with unit=1)."""
    if not values:
        return "— | — | —"
    shown = "{:.0f}" if unit == 1000 else "{:.1f}"
    return " | ".join(shown.format(_quantile(values, q) * unit) for q in (0.5, 0.95, 0.99))


@dataclass
class Judged:
    """The requests by kind, and the changes delivered (change-to-client, seconds)."""

    latencies: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    change_to_client: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    timeline: list[tuple[float, str, float]] = field(default_factory=list)  # received, kind, s
    unmatched: int = 0

    @property
    def every_change(self) -> list[float]:
        return [value for values in self.change_to_client.values() for value in values]


def _judge(polls: list[Poll], changes: dict[str, list[tuple[float, float]]]) -> Judged:
    """Sorts each request into its kind with the listener's record (see the module)."""
    judged = Judged()
    for poll in polls:
        kind, took = AT_ONCE, poll.received - poll.sent
        if poll.channel is not None:
            if poll.got <= poll.had:
                kind = RAN_OUT
            else:
                first = next(
                    (at for at, version in changes.get(poll.channel, ()) if version > poll.had),
                    None,
                )
                if first is None:
                    judged.unmatched += 1
                else:
                    if first > poll.sent:
                        kind, took = HELD, poll.received - first
                    judged.change_to_client[kind].append(poll.received - first)
                    judged.timeline.append((poll.received, CHANGE, poll.received - first))
        judged.latencies[(poll.endpoint, kind)].append(took)
        if kind == AT_ONCE:
            judged.timeline.append((poll.received, AT_ONCE, took))
    return judged


def _worker_jobs(exposition: str) -> dict[str, tuple[float, float, float]]:
    """Per queue: jobs run, mean queue wait and mean duration (seconds), from a worker's
    /metrics."""
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(exposition):
        if family.name not in ("esteira_job_queue_wait_seconds", "esteira_job_duration_seconds"):
            continue
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                what = f"{family.name}{sample.name.rpartition('_')[2]}"
                sums[(sample.labels["queue"], what)] += sample.value
    found = {}
    for queue in {queue for queue, _ in sums}:
        count = sums[(queue, "esteira_job_duration_secondscount")]
        waits = sums[(queue, "esteira_job_queue_wait_secondscount")]
        found[queue] = (
            count,
            sums[(queue, "esteira_job_queue_wait_secondssum")] / waits if waits else math.nan,
            sums[(queue, "esteira_job_duration_secondssum")] / count if count else math.nan,
        )
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_load", description=__doc__)
    parser.add_argument("--users", type=int, default=USERS, help=f"default {USERS}")
    users = parser.parse_args(argv or []).users
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
    began = time.monotonic()
    try:
        database_url = seeded_database(postgres.create_database(), orders=ORDERS, products=300)
        orders = _prepare(database_url)
        portal.start(portal_port)
        portal_admin = f"http://127.0.0.1:{portal_port}/admin"
        switches = httpx.get(f"{portal_admin}/switches").json()
        httpx.put(
            f"{portal_admin}/switches", json={**switches, "error_rate": 0.1}
        ).raise_for_status()
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
            # 200 users a tenant, each with 2-3 lookups at once: more than the default 200
            # lookups a tenant may have waiting (a 429 each beyond); sized for them, as an
            # operator would for tenants this large.
            ESTEIRA_TENANT_MAX_QUEUED_LOOKUPS="1000",
            ESTEIRA_LOG_LEVEL="WARNING",
            # Two uvicorn processes: one gateway process uses at most one of the two cores.
            ESTEIRA_API_WORKERS="2",
            # Thousands of users from one loopback address: no cap on connections per address.
            ESTEIRA_API_MAX_CONNECTIONS_PER_ADDRESS="0",
            **{k: v for k, v in os.environ.items() if k.startswith("ESTEIRA_")},
        ) as stack:
            workers = [
                stack.worker(pool, wrapper=pods.wrapper(pool)) for pool in ("ruptura", "scraper")
            ]
            base_url = stack.gateway()
            # As a cluster sends a pod traffic only once it is ready: the port opens before
            # uvicorn's processes have imported the app. Nothing else warms the stack up.
            wait_until(lambda: _ready(base_url), 60, "the gateway never became ready")
            listener = ChangeListener(stack.redis.url, workdir)
            roots = {p.process.name: p.process.pid for p in (*stack.processes, portal)}
            roots["redis"] = stack.redis.process.pid if stack.redis.process else 0
            roots["postgresql"] = postgres.pid() or 0
            with listener:
                roots["change listener"] = listener.process.pid or 0
                apart = ("portal", "change listener")
                with StackSampler({n: pid for n, pid in roots.items() if pid}, apart) as sampler:
                    started = time.monotonic()
                    # On uvloop, as the gateway's uvicorn runs: less of the cores it shares.
                    results = uvloop.run(_load(base_url, keys, orders, users))
                    elapsed = time.monotonic() - started
            changes = listener.changes()
            portal_stats = httpx.get(f"{portal_admin}/stats").json()
            worker_jobs = {
                worker.process.name: _worker_jobs(
                    httpx.get(f"http://127.0.0.1:{worker.metrics_port}/metrics").text
                )
                for worker in workers
            }
    finally:
        portal.stop()
        postgres.close()
        pods.remove()
    judged = _judge(results.polls, changes)
    print(
        f"{users} users arriving over {RAMP_SECONDS:.0f} s; every flow ended {elapsed:.0f} s "
        f"after the first arrival; the whole run took {time.monotonic() - began:.0f} s\n"
    )
    _print_requests(judged)
    _print_flows(users, results, started)
    _print_timeline(judged, sampler, started)
    _print_processes(sampler, len(results.polls))
    weight = f"cgroups of cpu.shares {WORKER_CPU_SHARES}" if pods.available else "nice 10"
    print(
        f"\nPortal lookups: {portal_stats.get('lookups')} (10 % answered with an error); the "
        f"workers at {weight}; the load "
        f"generator's event loop woke up to {_quantile(results.loop_lag, 0.99) * 1000:.0f} ms "
        f"late (p99; max {max(results.loop_lag, default=0) * 1000:.0f} ms); changes the "
        f"listener never saw published: {judged.unmatched}; requests asked again after a 503 "
        f"gateway_busy: {results.busy_retries}\n"
    )
    print("| worker | queue | jobs | mean queue wait s | mean job s |")
    print("|---|---|---:|---:|---:|")
    for name, queues in worker_jobs.items():
        for queue, (count, wait, duration) in sorted(queues.items()):
            print(f"| {name} | {queue} | {count:.0f} | {wait:.2f} | {duration:.2f} |")
    if results.errors:
        print("\n| errors | count |")
        print("|---|---:|")
        for what, count in sorted(results.errors.items(), key=lambda item: -item[1]):
            print(f"| {what} | {count} |")
    for sample in results.error_samples:
        print(f"error: {sample}")
    _print_summary(users, results, judged, sampler)


def _print_requests(judged: Judged) -> None:
    print("Requests as the client saw them (a held one: from its change to its answer):\n")
    print("| endpoint | kind | requests | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for (endpoint, kind), values in sorted(judged.latencies.items()):
        print(f"| {endpoint} | {kind} | {len(values)} | {_quantiles(values)} |")
    print("\nChanges delivered: the client's answer less the listener seeing it published:\n")
    print("| carried by an answer | changes | p50 ms | p95 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for kind, values in sorted(judged.change_to_client.items()):
        print(f"| {kind} | {len(values)} | {_quantiles(values)} |")
    print(f"| either | {len(judged.every_change)} | {_quantiles(judged.every_change)} |")


def _print_flows(users: int, results: Results, started: float) -> None:
    print("\nUser flows end to end, from the client's POST to its result:\n")
    print("| flow | completed | p50 s | p95 s | p99 s |")
    print("|---|---:|---:|---:|---:|")
    sessions = results.sessions_e2e
    print(
        f"| session of {SESSION_ORDERS} orders, to its last result | {len(sessions)} of "
        f"{users} | {_quantiles(sessions, unit=1)} |"
    )
    for how, values in sorted(results.lookups_e2e.items()):
        print(f"| OS lookup, {how} | {len(values)} | {_quantiles(values, unit=1)} |")
    if results.lookup_ends:
        ended = len(results.lookup_ends)
        minutes = (max(results.lookup_ends) - started) / 60
        print(
            f"\nLookups that needed a scrape: {ended} ended, {ended / minutes:.0f} a minute "
            "(from the first arrival to the last one's end)"
        )


def _print_timeline(judged: Judged, sampler: StackSampler, started: float) -> None:
    print(
        f"\nOver time ({WINDOW_SECONDS:.0f} s windows from the first arrival; cores: CPU of "
        "every sampled process and the load generator together):\n"
    )
    print("| seconds | at once | p50 ms | p99 ms | changes | p99 ms | cores busy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    windows: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for received, kind, took in judged.timeline:
        windows[int((received - started) // WINDOW_SECONDS)][kind].append(took)
    for window, kinds in sorted(windows.items()):
        start = started + window * WINDOW_SECONDS
        at_once, delivered = kinds[AT_ONCE], kinds[CHANGE]
        cores = _cores_busy(sampler.cpu_timeline, start, start + WINDOW_SECONDS)
        print(
            f"| {window * WINDOW_SECONDS:.0f}-{(window + 1) * WINDOW_SECONDS:.0f} "
            f"| {len(at_once)} | {_quantile(at_once, 0.5) * 1000:.0f} "
            f"| {_quantile(at_once, 0.99) * 1000:.0f} | {len(delivered)} "
            f"| {_quantile(delivered, 0.99) * 1000:.0f} | {cores:.2f} |"
        )


def _print_processes(sampler: StackSampler, requests: int) -> None:
    print("\nProcesses (each tree's peak RSS; CPU since the load began):\n")
    print("| process tree | processes | peak RSS MiB | CPU s |")
    print("|---|---:|---:|---:|")
    for name, seconds in sorted(sampler.cpu_seconds.items(), key=lambda item: -item[1]):
        shown = f"{name} (not in the stack)" if name in sampler.apart else name
        peak = sampler.peak_rss_by_root[name] / 1024
        print(f"| {shown} | {sampler.processes_by_root[name]} | {peak:.0f} | {seconds:.1f} |")
    own_peak = _field_kib(Path("/proc/self/status"), "VmHWM:") / 1024
    own_cpu = sampler.own_cpu_seconds
    print(f"| load generator (not in the stack) | 1 | {own_peak:.0f} | {own_cpu:.1f} |")
    stack_cpu = sum(s for name, s in sampler.cpu_seconds.items() if name not in sampler.apart)
    print(
        f"| the stack, summed | | {sampler.peak_rss_kib / 1024:.0f} "
        f"(PSS {sampler.peak_pss_kib / 1024:.0f}) | {stack_cpu:.1f} |"
    )
    gateway = sum(s for name, s in sampler.cpu_seconds.items() if name.startswith("api"))
    print(
        f"\nGateway CPU over the load a request: {gateway / requests * 1000:.2f} ms ({requests} "
        "requests; its background work, heartbeats and queue checks, included)"
    )


def _print_summary(users: int, results: Results, judged: Judged, sampler: StackSampler) -> None:
    at_once = [
        v for (_, kind), values in judged.latencies.items() if kind == AT_ONCE for v in values
    ]
    errors = sum(results.errors.values()) + judged.unmatched
    followed = results.scrapes["followed"]
    success = 100 * results.scrapes["success"] / followed if followed else 0.0
    print(
        f"load: {users} users, p99 {_quantile(at_once, 0.99) * 1000:.0f} ms, change-to-client "
        f"p99 {_quantile(judged.every_change, 0.99) * 1000:.0f} ms, session e2e p99 "
        f"{_quantile(results.sessions_e2e, 0.99):.1f} s, {errors} errors, "
        f"{sampler.peak_rss_kib / 1024 / 1024:.2f} GiB peak RSS, {success:.1f}% scrape success"
    )


def _cores_busy(timeline: list[tuple[float, float]], start: float, end: float) -> float:
    """The CPU the timeline's samples show used between two moments, in cores."""
    inside = [sample for sample in timeline if start <= sample[0] <= end]
    if len(inside) < 2:
        return 0.0
    (first_at, first_cpu), (last_at, last_cpu) = inside[0], inside[-1]
    return (last_cpu - first_cpu) / (last_at - first_at)


if __name__ == "__main__":
    main(sys.argv[1:])
