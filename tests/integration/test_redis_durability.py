"""Redis dying under a running session: through Sentinel (the primary SIGKILLed, a replica
promoted) and alone (redis-server SIGKILLed and restarted on its append-only file). The session
completes with every order exactly once, lookups in flight succeed, and the only 5xx a client
sees is a 503 with Retry-After."""

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
from arq.connections import ArqRedis
from arq.jobs import serialize_result

from esteira_cli.processes import free_port
from esteira_core import fair
from esteira_core.jobs import (
    RUPTURA_ANALYSE_BATCH,
    RUPTURA_BATCH_SIZE,
    RUPTURA_QUEUE,
    Pool,
    RupturaMode,
)
from esteira_core.serialization import serialize_job
from esteira_portal.records import FIRST_OS
from esteira_ruptura.projection import Horizon
from esteira_ruptura.use_cases import plan
from esteira_testing.components import RedisSentinelCluster, RedisServer, seeded_database
from esteira_testing.plugin import DEMO_PORTAL_PASSWORD, DEMO_PORTAL_USERNAME
from esteira_testing.ruptura import record_session

pytestmark = pytest.mark.integration
REFERENCE = "2026-03-02"
ORDERS = 3000
# Nothing listens there: a client that went around the Sentinels would fail.
NOWHERE = "redis://127.0.0.1:1/0"


class Client:
    """The gateway as a client sees it, remembering every status it answered (and whether each
    5xx said when to come back)."""

    def __init__(self, base_url: str) -> None:
        self.answers: list[tuple[int, str | None, str]] = []
        self.http = httpx.Client(
            base_url=base_url,
            timeout=30,
            event_hooks={"response": [self._seen]},
        )

    def _seen(self, response: httpx.Response) -> None:
        self.answers.append(
            (response.status_code, response.headers.get("Retry-After"), str(response.url.path))
        )

    def server_errors(self) -> list[tuple[int, str | None, str]]:
        """Every 5xx but a 503 with Retry-After."""
        return [
            answer
            for answer in self.answers
            if answer[0] >= 500 and not (answer[0] == 503 and answer[1])
        ]

    def follow(self, session_id: str, timeout: float = 90) -> list[str]:
        """Every result of the session, page after page (long polls), through 503s."""
        numbers: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"the session stopped at {len(numbers)}"
            response = self.http.get(
                f"/api/v1/ruptura/sessions/{session_id}/results",
                params={"offset": len(numbers), "wait": 2},
            )
            if response.status_code in (429, 503):
                time.sleep(float(response.headers["Retry-After"]) / 4)
                continue
            assert response.status_code == 200, response.text
            page = response.json()
            numbers += [result["num_pedido"] for result in page["results"]]
            assert page["next_offset"] == len(numbers)
            if page["done"]:
                return numbers

    def queue(self, pool: str) -> dict:
        queues = self.http.get("/api/v1/queues").json()["queues"]
        return next(queue for queue in queues if queue["pool"] == pool)

    def processed(self, session_id: str) -> int:
        response = self.http.get(f"/api/v1/ruptura/sessions/{session_id}")
        return int(response.json()["processed"]) if response.status_code == 200 else -1

    def wait_task(self, task_id: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.get(f"/api/v1/scraping/tasks/{task_id}")
            if response.status_code == 200 and response.json()["status"] in ("success", "failed"):
                return response.json()
            assert time.monotonic() < deadline, f"task stuck: {response.text}"
            time.sleep(0.2)


def _wait(condition: Callable[[], object], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def _env(tmp_path: Path, orders: int, **more: str) -> dict[str, str]:
    return {
        "ESTEIRA_DATABASE_URL": seeded_database(
            f"sqlite:///{tmp_path / 'durability.db'}", orders=orders, products=60
        ),
        "ESTEIRA_AUTH_DISABLED": "true",
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        **more,
    }


def _start(esteira_processes, env: dict[str, str], *pools: str) -> Client:
    """Workers of the given pools (one each), then a gateway; returns the gateway's client once
    it sees every one of them online (through the Sentinels, when `env` names them)."""
    for pool in pools:
        port = free_port()
        esteira_processes(
            f"{pool}-worker", ["worker", pool], {**env, "ESTEIRA_METRICS_PORT": str(port)}, port
        )
    port = free_port()
    esteira_processes("api", ["api", "--port", str(port)], env, port=port)
    api = Client(f"http://127.0.0.1:{port}")
    _wait(
        lambda: all(api.queue(pool)["workers_online"] > 0 for pool in pools),
        60,
        f"the workers never came online: {', '.join(pools)}",
    )
    return api


def _start_session(api: Client) -> str:
    started = api.http.post(
        "/api/v1/ruptura/sessions", json={"all": True, "reference_date": REFERENCE}
    )
    assert started.status_code == 202, started.text
    assert started.json()["total"] == ORDERS
    return str(started.json()["session_id"])


def test_a_session_runs_end_to_end_through_sentinels(
    redis_sentinel_cluster: RedisSentinelCluster, tmp_path, esteira_processes
):
    env = _env(tmp_path, 300, ESTEIRA_REDIS_URL=NOWHERE, **redis_sentinel_cluster.env)
    api = _start(esteira_processes, env, "ruptura")
    started = api.http.post(
        "/api/v1/ruptura/sessions", json={"all": True, "reference_date": REFERENCE}
    )
    assert started.status_code == 202 and started.json()["total"] == 300
    numbers = api.follow(started.json()["session_id"])
    assert len(numbers) == len(set(numbers)) == 300
    queue = api.queue("ruptura")
    assert (queue["mode"], queue["redis"]) == ("queue", "up"), queue
    # Everything was written to the primary the Sentinels name, and copied to its replica.
    primary = redis_sentinel_cluster.current_primary().client()
    assert primary.llen(f"esteira:ruptura:session:{started.json()['session_id']}:results") == 300
    assert api.server_errors() == []


def test_a_failover_mid_session_loses_nothing(
    redis_sentinel_cluster: RedisSentinelCluster, tmp_path, esteira_processes, demo_portal
):
    cluster = redis_sentinel_cluster
    env = _env(
        tmp_path,
        ORDERS,
        ESTEIRA_REDIS_URL=NOWHERE,
        **cluster.env,
        # One batch at a time, so the primary dies in the middle of the session.
        ESTEIRA_WORKER_CONCURRENCY="1",
        ESTEIRA_PORTAL_URL=demo_portal,
        ESTEIRA_PORTAL_USERNAME=DEMO_PORTAL_USERNAME,
        ESTEIRA_PORTAL_PASSWORD=DEMO_PORTAL_PASSWORD,
        ESTEIRA_SCRAPE_BACKOFF_SECONDS="0.5",
    )
    api = _start(esteira_processes, env, "ruptura", "scraper")
    # Lookups in flight across the failover: the portal answers each one 2 s late.
    portal = httpx.Client(base_url=demo_portal, timeout=10)
    portal.put("/admin/switches", json={**portal.get("/admin/switches").json(), "latency_ms": 2000})
    tasks = [api.http.post(f"/api/v1/scraping/os/{FIRST_OS + n}").json()["task_id"] for n in (1, 2)]

    session_id = _start_session(api)
    # Well into the session: the worker is writing batches one after the other.
    _wait(lambda: api.processed(session_id) >= 300, 60, "the session never started")
    in_flight = [api.http.get(f"/api/v1/scraping/tasks/{task_id}").json() for task_id in tasks]
    dead = cluster.kill_primary()
    assert not any(task["status"] in ("success", "failed") for task in in_flight), in_flight
    replica = next(server for server in cluster.servers if server is not dead).client()
    assert replica.llen(f"esteira:ruptura:session:{session_id}:results") < ORDERS, (
        "the primary died after the session, not in the middle of it"
    )
    cluster.wait_for_promotion(dead.port)

    numbers = api.follow(session_id)
    assert len(numbers) == len(set(numbers)) == ORDERS
    for task_id in tasks:
        task = api.wait_task(task_id)
        assert task["status"] == "success", task
    assert api.server_errors() == []


def test_a_failover_that_loses_the_primarys_last_writes_loses_no_order(tmp_path, esteira_processes):
    """Replication is asynchronous: the primary dies with writes it acknowledged that its
    replica never had (here the replica lags 50 ms behind), among them batches of jobs the
    worker, riding the failover out, then finishes on the promoted replica."""
    cluster = RedisSentinelCluster(relay=True).start()
    try:
        # Sessions whose batches judge their own orders, eight jobs at a time: a steady stream
        # of batch writes, jobs in the middle of theirs whenever the primary dies. The lag is
        # shorter than a job, and a running job is held longer than the failover takes (three
        # beats of 1 s), so that jobs the replica knows started run on across the failover
        # (a job started in the lag is lost as started too, and runs again at once).
        orders, sessions = 990, 8
        env = _env(
            tmp_path,
            orders,
            ESTEIRA_REDIS_URL=NOWHERE,
            ESTEIRA_HEARTBEAT_INTERVAL_SECONDS="1",
            **cluster.env,
        )
        api = _start(esteira_processes, env, "ruptura")
        started = [
            api.http.post("/api/v1/ruptura/sessions", json={"all": True}) for _ in range(sessions)
        ]
        assert [response.status_code for response in started] == [202] * sessions
        ids = [response.json()["session_id"] for response in started]
        _wait(lambda: api.processed(ids[1]) > 0, 60, "the sessions never started")
        cluster.hold_replication()
        time.sleep(0.05)
        dead = cluster.kill_primary()
        replica = next(server for server in cluster.servers if server is not dead).client()
        stored = sum(replica.llen(f"esteira:ruptura:session:{id_}:results") for id_ in ids)
        assert stored < orders * sessions, "the primary died after the sessions, not during them"
        cluster.wait_for_promotion(dead.port)

        primary = cluster.current_primary().client()
        for session_id in ids:
            numbers = api.follow(session_id, timeout=60)
            assert len(numbers) == len(set(numbers)) == orders
            results = primary.lrange(f"esteira:ruptura:session:{session_id}:results", 0, -1)
            assert {json.loads(result)["status"] for result in results} == {"analisado"}
    finally:
        cluster.close()


class EventStream(threading.Thread):
    """Reads a session's server-sent events until the session is done (or the stream ends)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events: list[tuple[str, dict]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, timeout=httpx.Timeout(30, read=120)) as stream:
                assert stream.status_code == 200
                kind = ""
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        kind = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        self.events.append((kind, json.loads(line.removeprefix("data: "))))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_a_redis_restart_on_its_append_only_file_loses_nothing(tmp_path, esteira_processes):
    redis_server = RedisServer(persist=True).start()
    try:
        env = _env(
            tmp_path,
            ORDERS,
            ESTEIRA_REDIS_URL=redis_server.url,
            ESTEIRA_WORKER_CONCURRENCY="1",
        )
        api = _start(esteira_processes, env, "ruptura")
        session_id = _start_session(api)
        stream = EventStream(f"{api.http.base_url}/api/v1/ruptura/sessions/{session_id}/events")
        stream.start()
        _wait(lambda: api.processed(session_id) >= 300, 60, "the session never started")
        redis_server.kill()
        redis_server.start()  # the same port and folder: its append-only file
        found = redis_server.client().llen(f"esteira:ruptura:session:{session_id}:results")
        assert 0 < found < ORDERS, "Redis was not killed in the middle of the session"

        numbers = api.follow(session_id)
        assert len(numbers) == len(set(numbers)) == ORDERS
        stream.join(30)
        assert stream.error is None, stream.error
        progress = [data for kind, data in stream.events if kind == "progress"]
        assert progress and progress[-1] == {"processed": ORDERS, "total": ORDERS, "done": True}
        assert api.server_errors() == []
    finally:
        redis_server.close()


async def _lost_in_a_failover(redis_url: str, orders: list[str], failed: bool) -> str:
    """What a failover leaves when the dying primary acknowledged a job's batch writes but never
    passed them on, while its worker, riding the failover out, wrote the job's end (arq's
    result) to the promoted replica: the job finished, its batches not written, nothing queued.
    (`failed`: the job's last try had failed, and the orders it wrote in error were lost so.)
    The primary's last moment cannot be chosen in a test, so its aftermath is written here as
    the promoted replica holds it (arq's result exactly as arq writes it), beside a job of the
    same session queued as usual. Returns the session's id."""
    session_id = uuid.uuid4().hex
    batches = len(orders) // RUPTURA_BATCH_SIZE
    redis = ArqRedis.from_url(redis_url)
    try:
        await record_session(redis, session_id, total=len(orders), batches=batches)
        lost, queued = plan(
            session_id,
            orders,
            RupturaMode.INDEPENDENT,
            Horizon(date.fromisoformat(REFERENCE), 28, 7),
        )
        lost_id, queued_id = (f"ruptura-{session_id}-{job.batch_index}" for job in (lost, queued))
        started = int(time.time() * 1000)
        finished = serialize_result(
            RUPTURA_ANALYSE_BATCH,
            (),
            lost.to_kwargs(),
            5 if failed else 1,
            started,
            not failed,
            TimeoutError() if failed else {"session_id": session_id, "batch": 0, "stored": 100},
            started,
            started + 20,
            f"{lost_id}:{RUPTURA_ANALYSE_BATCH}",
            RUPTURA_QUEUE,
            job_id=lost_id,
            serializer=serialize_job,
        )
        await redis.set(f"arq:result:{lost_id}", finished, px=300_000)
        await fair.submit(
            redis,
            fair.FairQueue(Pool.RUPTURA, 32, 0.5),
            RUPTURA_ANALYSE_BATCH,
            [fair.Job(queued_id, queued, units=len(queued.pedidos))],
            "t",
            fair.Quota(10_000, "orders", 5),
        )
    finally:
        await redis.aclose()
    return session_id


@pytest.mark.parametrize("failed", [False, True], ids=["finished", "failed"])
def test_a_job_finished_without_its_batches_written_runs_again(
    redis_url, tmp_path, esteira_processes, failed
):
    env = _env(tmp_path, 300, ESTEIRA_REDIS_URL=redis_url)
    with sqlite3.connect(env["ESTEIRA_DATABASE_URL"].removeprefix("sqlite:///")) as db:
        rows = db.execute("SELECT DISTINCT num_pedido FROM carteira_itens ORDER BY num_pedido")
        orders = [number for (number,) in rows][:200]
    session_id = asyncio.run(_lost_in_a_failover(redis_url, orders, failed))
    _start(esteira_processes, env, "ruptura")

    store = redis_lib.Redis.from_url(redis_url)
    results = f"esteira:ruptura:session:{session_id}:results"
    _wait(lambda: store.llen(results) >= 200, 30, "the lost job's batches were never written")
    time.sleep(1)  # nothing more comes
    written = [json.loads(raw) for raw in store.lrange(results, 0, -1)]
    assert sorted(result["num_pedido"] for result in written) == sorted(orders)
    statuses = {result["num_pedido"]: result["status"] for result in written}
    # The lost job's orders: analysed by its new run, or (it had failed) written in error.
    assert {statuses[number] for number in orders[:100]} == {"erro" if failed else "analisado"}
    assert {statuses[number] for number in orders[100:]} == {"analisado"}
    assert store.hget(f"esteira:ruptura:session:{session_id}", "status") == b"done"
