"""Redis over TLS with a password (rediss://, a private CA): the gateway and a worker run a whole
ruptura session through it, and neither the Redis password nor an API key is logged."""

import time

import httpx
import pytest

from esteira_api.apikeys import generate_key, key_digest
from esteira_cli.processes import free_port
from esteira_testing.components import RedisServer, seeded_database

pytestmark = pytest.mark.integration
REDIS_PASSWORD = "r3dis-s3nha-tls"
API_KEY = generate_key()


@pytest.fixture
def tls_redis():
    server = RedisServer(tls=True, password=REDIS_PASSWORD).start()
    yield server
    server.close()


def test_a_session_runs_through_redis_over_tls_with_a_password(
    tls_redis, tmp_path, esteira_processes
) -> None:
    env = {
        "ESTEIRA_REDIS_URL": tls_redis.url,
        "ESTEIRA_REDIS_PASSWORD": REDIS_PASSWORD,
        "ESTEIRA_REDIS_TLS_CA_FILE": str(tls_redis.ca_file),
        "ESTEIRA_DATABASE_URL": seeded_database(
            f"sqlite:///{tmp_path / 'tls.db'}", orders=60, products=20
        ),
        "ESTEIRA_API_KEYS": f"vendas:{key_digest(API_KEY)}",
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    }
    assert tls_redis.url.startswith("rediss://")
    metrics_port, api_port = free_port(), free_port()
    worker = esteira_processes(
        "ruptura-worker",
        ["worker", "ruptura"],
        {**env, "ESTEIRA_METRICS_PORT": str(metrics_port)},
        port=metrics_port,
    )
    gateway = esteira_processes("api", ["api", "--port", str(api_port)], env, port=api_port)
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    ready = api.get("/readyz").json()
    assert ready["status"] == "ready", ready

    deadline = time.monotonic() + 30
    while api.get("/api/v1/queues").json()["queues"][0]["workers_online"] < 1:
        assert time.monotonic() < deadline, "the worker never reached Redis over TLS"
        time.sleep(0.2)
    orders = [order["num_pedido"] for order in api.get("/api/v1/ruptura/orders?limit=60").json()]
    started = api.post("/api/v1/ruptura/sessions", json={"pedidos": orders})
    assert started.status_code == 202, started.text
    results, offset = [], 0
    while True:
        page = api.get(f"{started.json()['results_url'].split('?')[0]}?offset={offset}").json()
        results += page["results"]
        offset = page["next_offset"]
        if page["done"]:
            break
        assert time.monotonic() < deadline + 30, page
        time.sleep(0.2)
    assert sorted(r["num_pedido"] for r in results) == sorted(orders)
    worker_metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    batches = [
        line
        for line in worker_metrics.splitlines()
        if line.startswith("esteira_jobs_total{") and 'function="ruptura_analyse_batch"' in line
    ]
    # The session's three batches of 20, in one job.
    assert len(batches) == 1 and 'outcome="success"' in batches[0] and batches[0].endswith(" 1.0")

    logs = worker.output() + gateway.output()
    assert REDIS_PASSWORD not in logs and API_KEY not in logs
