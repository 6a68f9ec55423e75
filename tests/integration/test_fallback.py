"""Queue health and the inline fallback, with real processes killed on purpose: Redis, a
worker in the middle of a session, a browser in the middle of a scrape."""

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from esteira_cli.processes import free_port
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_portal.records import FIRST_OS
from esteira_scraping.processes import descendants
from esteira_testing.components import seeded_database

pytestmark = pytest.mark.integration
REFERENCE = "2026-03-02"


def _seeded(tmp_path: Path, orders: int = 300) -> str:
    return seeded_database(f"sqlite:///{tmp_path / 'fallback.db'}", orders=orders, products=60)


_NO_AUTH = {"ESTEIRA_AUTH_DISABLED": "true"}


def _gateway(esteira_processes, env: dict[str, str]) -> httpx.Client:
    port = free_port()
    env = {**_NO_AUTH, **env}
    esteira_processes("api", ["api", "--port", str(port)], env, port=port)
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)


def _worker(esteira_processes, name: str, pool: str, env: dict[str, str]):
    port = free_port()
    worker = esteira_processes(
        name, ["worker", pool], {**env, "ESTEIRA_METRICS_PORT": str(port)}, port=port
    )
    worker.metrics_port = port
    return worker


def _mode(api: httpx.Client, pool: str) -> dict:
    return next(q for q in api.get("/api/v1/queues").json()["queues"] if q["pool"] == pool)


def _wait(condition, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def _follow(api: httpx.Client, session_id: str, timeout: float = 60) -> list[dict]:
    results, offset = [], 0
    deadline = time.monotonic() + timeout
    while True:
        page = api.get(
            f"/api/v1/ruptura/sessions/{session_id}/results", params={"offset": offset}
        ).json()
        results += page["results"]
        offset = page["next_offset"]
        if page["done"]:
            return results
        assert time.monotonic() < deadline, "session did not finish"
        time.sleep(0.1)


def test_redis_death_means_inline_answers_and_its_return_means_the_queue_again(
    own_redis_server, tmp_path, esteira_processes
):
    env = {
        "ESTEIRA_REDIS_URL": own_redis_server.url,
        "ESTEIRA_DATABASE_URL": _seeded(tmp_path),
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    }
    _worker(esteira_processes, "ruptura-worker", "ruptura", env)
    api = _gateway(esteira_processes, env)
    orders = [str(100001 + i) for i in range(30)]
    body = {"pedidos": orders, "reference_date": REFERENCE}
    queued = api.post("/api/v1/ruptura/sessions", json=body)
    assert queued.status_code == 202
    assert _mode(api, "ruptura")["mode"] == "queue"

    own_redis_server.kill()
    inline = api.post("/api/v1/ruptura/sessions", json=body)
    assert inline.status_code == 200, inline.text
    answer = inline.json()
    assert answer["mode"] == "inline" and answer["total"] == 30
    assert sorted(r["num_pedido"] for r in answer["results"]) == sorted(orders)

    seed_route = api.post("/api/ruptura/worker/iniciar-processamento", json={"pedidos": orders[:5]})
    assert seed_route.status_code == 200
    assert seed_route.json()["modo"] == "inline" and len(seed_route.json()["resultados"]) == 5
    assert api.get(f"/api/ruptura/analisar-pedido/{orders[0]}").status_code == 200

    gone = api.get(f"/api/v1/ruptura/sessions/{queued.json()['session_id']}")
    assert gone.status_code == 503 and gone.headers["retry-after"] == "5"
    assert gone.json()["error"]["code"] == "redis_unavailable"
    queues = api.get("/api/v1/queues").json()["queues"]
    assert {(q["mode"], q["reason"], q["redis"]) for q in queues} == {
        ("inline", "redis_down", "down")
    }
    assert api.get("/readyz").json()["status"] == "degraded"
    assert api.get("/api/desenvolvimento/queue-status").json()["celery_available"] is False

    own_redis_server.start()
    _wait(lambda: _mode(api, "ruptura")["mode"] == "queue", 15, "no return to queue mode")
    again = api.post("/api/v1/ruptura/sessions", json=body)
    assert again.status_code == 202
    assert len(_follow(api, again.json()["session_id"])) == 30

    metrics = api.get("/metrics").text
    assert (
        'esteira_inline_fallbacks_total{queue="arq:queue:ruptura",reason="redis_down"} 2.0'
        in metrics
    )
    assert 'esteira_queue_mode_switches_total{queue="arq:queue:ruptura",to="inline"}' in metrics
    assert 'esteira_queue_mode_switches_total{queue="arq:queue:ruptura",to="queue"}' in metrics


def test_a_gateway_frozen_mid_command_does_not_blame_redis_or_go_inline(
    own_redis_server, tmp_path, esteira_processes
):
    """A gateway short of CPU (here frozen by SIGSTOP, as the kernel freezes a pod at its CPU
    limit) reads Redis's answers after their timeout. That is not Redis down: no inline work
    (a gateway scraping with its own Chromium), no open breaker; the requests caught in it get
    503 gateway_busy, and a real outage afterwards is still seen as one."""
    env = {
        "ESTEIRA_REDIS_URL": own_redis_server.url,
        "ESTEIRA_DATABASE_URL": _seeded(tmp_path),
        "ESTEIRA_REDIS_TIMEOUT_SECONDS": "0.2",
        "ESTEIRA_RUPTURA_GRACE_SECONDS": "600",  # no worker: the queue counts as served
        "ESTEIRA_TENANT_RATE_PER_SECOND": "100000",  # taken (from Redis), never reached
        "ESTEIRA_TENANT_RATE_BURST": "100000",
    }
    port = free_port()
    gateway = esteira_processes(
        "api", ["api", "--port", str(port), "--workers", "1"], env | _NO_AUTH, port=port
    )
    base_url = f"http://127.0.0.1:{port}"
    body = {"pedidos": [str(100001 + i) for i in range(3)], "reference_date": REFERENCE}
    session_id = httpx.post(f"{base_url}/api/v1/ruptura/sessions", json=body).json()["session_id"]
    answers: list[httpx.Response] = []
    freezing = threading.Event()

    def client(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as api:
            while not freezing.is_set():
                if index % 2:
                    answers.append(api.post("/api/v1/ruptura/sessions", json=body))
                else:
                    answers.append(api.get(f"/api/v1/ruptura/sessions/{session_id}"))

    clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in clients:
        thread.start()
    assert own_redis_server.process is not None
    redis_pid = own_redis_server.process.pid
    try:
        time.sleep(0.5)
        for _ in range(5):
            # Redis paused for 50 ms (under the timeout) so that commands are in flight when
            # the gateway freezes; their answers arrive while it is frozen.
            os.kill(redis_pid, signal.SIGSTOP)
            time.sleep(0.05)
            os.kill(gateway.process.pid, signal.SIGSTOP)
            os.kill(redis_pid, signal.SIGCONT)
            time.sleep(0.4)  # twice the Redis timeout
            os.kill(gateway.process.pid, signal.SIGCONT)
            time.sleep(0.3)
    finally:
        os.kill(redis_pid, signal.SIGCONT)
        os.kill(gateway.process.pid, signal.SIGCONT)
        freezing.set()
        for thread in clients:
            thread.join()

    api = httpx.Client(base_url=base_url, timeout=30)
    metrics = api.get("/metrics").text
    late = _sample(metrics, "esteira_redis_timeouts_while_late_total")
    assert late > 0, "no command was caught by a freeze: the test proved nothing"
    kinds = {(a.status_code, a.json().get("error", {}).get("code")) for a in answers}
    assert kinds <= {(200, None), (202, None), (503, "gateway_busy")}, kinds
    assert "esteira_inline_fallbacks_total{" not in metrics
    assert "esteira_queue_mode_switches_total{" not in metrics
    assert {q["mode"] for q in api.get("/api/v1/queues").json()["queues"]} == {"queue"}
    assert "circuit opened" not in gateway.output()

    own_redis_server.kill()
    inline = api.post("/api/v1/ruptura/sessions", json=body)
    assert inline.status_code == 200 and inline.json()["mode"] == "inline", inline.text


def _sample(metrics: str, name: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(f"{name} "))
    return float(line.split()[1])


def test_a_queue_nobody_serves_past_its_grace_is_served_inline(
    redis_url, tmp_path, esteira_processes
):
    env = {
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": _seeded(tmp_path),
        "ESTEIRA_RUPTURA_GRACE_SECONDS": "0.5",
        "ESTEIRA_QUEUE_CHECK_SECONDS": "0.1",
    }
    api = _gateway(esteira_processes, env)
    body = {"pedidos": [str(100001 + i) for i in range(25)], "reference_date": REFERENCE}
    first = api.post("/api/v1/ruptura/sessions", json=body).json()  # queued: nobody takes it
    _wait(lambda: _mode(api, "ruptura")["mode"] == "inline", 10, "never switched to inline")
    assert _mode(api, "ruptura")["reason"] == "not_served"
    second = api.post("/api/v1/ruptura/sessions", json=body)
    assert second.status_code == 202
    results = _follow(api, second.json()["session_id"])
    assert len(results) == 25
    # The session queued during the grace is not stranded: the gateway's standby serves it too.
    assert len(_follow(api, first["session_id"])) == 25


def test_a_scraper_pool_at_zero_within_its_grace_still_gets_the_work(
    redis_url, tmp_path, esteira_processes
):
    url = f"sqlite:///{tmp_path / 'scale.db'}"
    upgrade(create_db_engine(url).url)
    api = _gateway(esteira_processes, {"ESTEIRA_REDIS_URL": redis_url, "ESTEIRA_DATABASE_URL": url})
    response = api.post(f"/api/v1/scraping/os/{FIRST_OS}")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    scraper = _mode(api, "scraper")
    assert (scraper["mode"], scraper["workers_online"], scraper["ready"]) == ("queue", 0, 1)
    queue = api.get("/api/desenvolvimento/queue-status").json()["queue_info"]
    assert (queue["scheduled_tasks"], queue["workers_online"]) == (1, 0)


def test_a_worker_killed_mid_session_loses_no_order_and_duplicates_none(
    redis_url, tmp_path, esteira_processes
):
    # A session under WHOLE_CARTEIRA_FROM orders, fed one batch at a time: each batch reads its
    # own orders, so the session is still running when its worker is killed (a bigger one is
    # copied from the carteira judged at once, and may be done before the kill).
    env = {
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": _seeded(tmp_path, 999),
        "ESTEIRA_JOB_TIMEOUT_SECONDS": "3",
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "ESTEIRA_RUPTURA_FAIR_WINDOW": "1",
    }
    doomed = _worker(esteira_processes, "doomed", "ruptura", env)
    api = _gateway(esteira_processes, env)
    started = api.post("/api/v1/ruptura/sessions", json={"all": True, "reference_date": REFERENCE})
    session_id = started.json()["session_id"]
    _wait(
        lambda: api.get(f"/api/v1/ruptura/sessions/{session_id}").json()["processed"] > 0,
        30,
        "the first worker never started",
    )
    doomed.kill()  # SIGKILL: its running jobs stay claimed until their in-progress keys expire
    assert api.get(f"/api/v1/ruptura/sessions/{session_id}").json()["done"] is False
    _worker(esteira_processes, "survivor", "ruptura", env)
    results = _follow(api, session_id, timeout=90)
    numbers = [r["num_pedido"] for r in results]
    assert len(numbers) == len(set(numbers)) == 999


def test_a_browser_killed_mid_scrape_is_replaced_and_the_task_retried(
    redis_url, tmp_path, esteira_processes
):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    upgrade(create_db_engine(url).url)
    portal_port = free_port()
    esteira_processes("portal", ["portal", "--port", str(portal_port)], {}, port=portal_port)
    env = {
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": url,
        "ESTEIRA_PORTAL_URL": f"http://127.0.0.1:{portal_port}",
        "ESTEIRA_SCRAPE_BACKOFF_SECONDS": "0.2",
    }
    worker = _worker(esteira_processes, "scraper", "scraper", env)
    api = _gateway(esteira_processes, env)
    portal = httpx.Client(base_url=f"http://127.0.0.1:{portal_port}")
    switches = portal.get("/admin/switches").json()
    portal.put("/admin/switches", json={**switches, "latency_ms": 3000})
    task_id = api.post(f"/api/v1/scraping/os/{FIRST_OS + 5}").json()["task_id"]
    _wait(
        lambda: api.get(f"/api/v1/scraping/tasks/{task_id}").json()["stage"] == "searching",
        60,
        "the scrape never reached the search",
    )

    def chromium() -> list[int]:
        return [
            pid
            for pid in descendants(worker.process.pid)
            if Path(f"/proc/{pid}/comm").exists()
            and "chrom" in Path(f"/proc/{pid}/comm").read_text()
            and Path(f"/proc/{pid}/comm").read_text().strip() != "chromedriver"
        ]

    for pid in chromium():
        os.kill(pid, signal.SIGKILL)
    portal.put("/admin/switches", json={**switches, "latency_ms": 0})
    task = _wait(
        lambda: (
            (t := api.get(f"/api/v1/scraping/tasks/{task_id}").json())["status"]
            in ("success", "failed")
            and t
        ),
        90,
        "the task never ended",
    )
    assert task["status"] == "success" and task["attempts"] >= 2
    metrics = httpx.get(f"http://127.0.0.1:{worker.metrics_port}/metrics").text
    assert 'esteira_browser_restarts_total{pool="scraper",reason="BrowserFailure"}' in metrics
