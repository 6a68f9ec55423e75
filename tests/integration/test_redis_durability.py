"""Redis dying under a running session: through Sentinel (the primary SIGKILLed, a replica
promoted) and alone (redis-server SIGKILLed and restarted on its append-only file). The session
completes with every order exactly once, lookups in flight succeed, and the only 5xx a client
sees is a 503 with Retry-After."""

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from esteira_cli.processes import free_port
from esteira_portal.records import FIRST_OS
from esteira_testing.components import RedisSentinelCluster, RedisServer, seeded_database
from esteira_testing.plugin import DEMO_PORTAL_PASSWORD, DEMO_PORTAL_USERNAME

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
    """Workers of the given pools (one each), then a gateway; returns the gateway's client."""
    for pool in pools:
        port = free_port()
        esteira_processes(
            f"{pool}-worker", ["worker", pool], {**env, "ESTEIRA_METRICS_PORT": str(port)}, port
        )
    port = free_port()
    esteira_processes("api", ["api", "--port", str(port)], env, port=port)
    return Client(f"http://127.0.0.1:{port}")


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
    _wait(
        lambda: api.queue("ruptura")["workers_online"] > 0,
        30,
        "the worker never came online through the Sentinels",
    )
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
    _wait(
        lambda: all(q["workers_online"] for q in api.http.get("/api/v1/queues").json()["queues"]),
        60,
        "the workers never came online through the Sentinels",
    )
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
        _wait(
            lambda: api.queue("ruptura")["workers_online"] > 0,
            30,
            "the worker never came online",
        )
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
