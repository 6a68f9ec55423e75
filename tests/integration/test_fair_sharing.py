"""Fair sharing between tenants, end to end with real components: one tenant's backlog of
sessions and lookups does not hold back another tenant's small session and single lookup, and
a tenant over its quota of work waiting gets a 429 with Retry-After."""

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from esteira_api.apikeys import generate_key, key_digest
from esteira_cli.processes import free_port
from esteira_core.jobs import RUPTURA_BATCH_SIZE, RUPTURA_BATCHES_PER_BIG_JOB
from esteira_portal.records import FIRST_OS
from esteira_testing.components import seeded_database

pytestmark = pytest.mark.integration
REFERENCE = "2026-03-02"
ORDERS = 2000
API_KEYS = {"alpha": generate_key(), "beta": generate_key()}
UNKNOWN_OS = [str(9_100_000 + n) for n in range(50)]


def _env(redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": database_url,
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "ESTEIRA_API_KEYS": ",".join(f"{t}:{key_digest(k)}" for t, k in API_KEYS.items()),
        **extra,
    }


def _gateway(esteira_processes, env: dict[str, str]) -> Callable[[str], httpx.Client]:
    port = free_port()
    esteira_processes("api", ["api", "--port", str(port)], env, port=port)

    def as_tenant(tenant: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {API_KEYS[tenant]}"},
            timeout=30,
        )

    return as_tenant


def _worker(esteira_processes, pool: str, env: dict[str, str]) -> None:
    port = free_port()
    esteira_processes(
        f"{pool}-worker", ["worker", pool], {**env, "ESTEIRA_METRICS_PORT": str(port)}, port=port
    )


def _processed(client: httpx.Client, session_id: str) -> int:
    return client.get(f"/api/v1/ruptura/sessions/{session_id}").json()["processed"]


def test_a_small_session_and_a_single_lookup_pass_another_tenants_backlog(
    redis_url, tmp_path: Path, esteira_processes
) -> None:
    database_url = seeded_database(f"sqlite:///{tmp_path / 'fair.db'}", orders=ORDERS, products=120)
    portal_port = free_port()
    credentials = {"ESTEIRA_PORTAL_USERNAME": "robo", "ESTEIRA_PORTAL_PASSWORD": "s3nha"}
    esteira_processes(
        "portal", ["portal", "--port", str(portal_port)], credentials, port=portal_port
    )
    env = _env(
        redis_url,
        database_url,
        **credentials,
        ESTEIRA_PORTAL_URL=f"http://127.0.0.1:{portal_port}",
        ESTEIRA_RUPTURA_FAIR_WINDOW="4",
        ESTEIRA_SCRAPER_FAIR_WINDOW="1",
        ESTEIRA_SCRAPE_RATE_PER_MINUTE="60",
        ESTEIRA_SCRAPE_RATE_BURST="1",
    )
    _worker(esteira_processes, "ruptura", {**env, "ESTEIRA_WORKER_CONCURRENCY": "2"})
    _worker(esteira_processes, "scraper", {**env, "ESTEIRA_WORKER_CONCURRENCY": "1"})
    as_tenant = _gateway(esteira_processes, env)
    alpha, beta = as_tenant("alpha"), as_tenant("beta")

    # Alpha's backlog: 50 lookups the portal does not know (one portal token a second), then
    # 5 sessions of the whole carteira (10,000 orders, 500 batches).
    for numero_os in UNKNOWN_OS:
        assert alpha.post(f"/api/v1/scraping/os/{numero_os}").status_code == 202
    body = {"all": True, "reference_date": REFERENCE}
    alpha_sessions = [alpha.post("/api/v1/ruptura/sessions", json=body) for _ in range(5)]
    assert all(r.status_code == 202 for r in alpha_sessions)
    alpha_ids = [r.json()["session_id"] for r in alpha_sessions]
    alpha_total = sum(r.json()["total"] for r in alpha_sessions)

    # Beta's one-order session, followed by long polls to its end.
    order = str(100001)
    started = beta.post(
        "/api/v1/ruptura/sessions", json={"pedidos": [order], "reference_date": REFERENCE}
    )
    assert started.status_code == 202, started.text
    results_url = f"/api/v1/ruptura/sessions/{started.json()['session_id']}/results"
    deadline = time.monotonic() + 60
    while not (page := beta.get(results_url, params={"wait": 5}).json())["done"]:
        assert time.monotonic() < deadline, "beta's session did not finish"
    assert [r["num_pedido"] for r in page["results"]] == [order]
    alpha_done = sum(_processed(alpha, session_id) for session_id in alpha_ids)
    assert alpha_done < alpha_total / 2, f"beta waited for alpha: {alpha_done} orders done"

    # Beta's single lookup of an OS the portal has: the next portal token is beta's.
    numero_os = str(FIRST_OS + 7)
    queued = beta.post(f"/api/v1/scraping/os/{numero_os}")
    assert queued.status_code == 202
    task_url = f"/api/v1/scraping/tasks/{queued.json()['task_id']}"
    deadline = time.monotonic() + 90
    while (task := beta.get(task_url).json())["status"] not in ("success", "failed"):
        assert time.monotonic() < deadline, f"beta's lookup did not finish: {task}"
        time.sleep(0.1)
    assert task["status"] == "success" and task["result"]["data"]["numero_os"] == numero_os
    alpha_tasks = alpha.get("/api/v1/scraping/tasks", params={"limit": 100}).json()
    waiting = [t for t in alpha_tasks if t["status"] in ("queued", "deferred")]
    assert len(waiting) >= 25, f"beta waited for alpha's lookups: {len(waiting)} left"

    # Alpha's backlog is not lost: every session ends.
    deadline = time.monotonic() + 120
    while sum(_processed(alpha, session_id) for session_id in alpha_ids) < alpha_total:
        assert time.monotonic() < deadline, "alpha's sessions did not finish"
        time.sleep(0.5)


def test_a_tenant_over_its_quota_gets_429_with_retry_after(
    redis_url, tmp_path: Path, esteira_processes
) -> None:
    database_url = seeded_database(
        f"sqlite:///{tmp_path / 'quota.db'}", orders=ORDERS, products=120
    )
    # No worker: what is submitted waits (the gateway's standby would start only after the
    # grace periods).
    env = _env(
        redis_url,
        database_url,
        ESTEIRA_TENANT_MAX_QUEUED_ORDERS="3000",
        ESTEIRA_TENANT_MAX_QUEUED_LOOKUPS="1",
        ESTEIRA_RUPTURA_FAIR_WINDOW="4",
        ESTEIRA_SCRAPER_FAIR_WINDOW="1",
    )
    as_tenant = _gateway(esteira_processes, env)
    alpha, beta = as_tenant("alpha"), as_tenant("beta")
    body = {"all": True, "reference_date": REFERENCE}

    first = alpha.post("/api/v1/ruptura/sessions", json=body)
    assert first.status_code == 202
    refused = alpha.post("/api/v1/ruptura/sessions", json=body)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
    error = refused.json()["error"]
    # 1 job (of RUPTURA_BATCHES_PER_BIG_JOB batches of 20, a big session's: it takes 5 of the
    # window's 4 places) is in arq's window; the other orders wait.
    assert error["code"] == "quota_exceeded"
    waiting = first.json()["total"] - RUPTURA_BATCH_SIZE * RUPTURA_BATCHES_PER_BIG_JOB
    assert f"{waiting} orders" in error["message"] and "3000" in error["message"]
    over_quota = 3000 - waiting + 1
    seed_route = alpha.post(
        "/api/ruptura/worker/iniciar-processamento",
        json={"pedidos": [str(100001 + n) for n in range(over_quota)]},
    )
    assert seed_route.status_code == 429 and seed_route.json()["success"] is False
    assert beta.post("/api/v1/ruptura/sessions", json=body).status_code == 202

    # Lookups: one fed (the window), one waiting (the quota), the next refused.
    assert alpha.post(f"/api/v1/scraping/os/{FIRST_OS + 1}").status_code == 202
    assert alpha.post(f"/api/v1/scraping/os/{FIRST_OS + 2}").status_code == 202
    over = alpha.post(f"/api/v1/scraping/os/{FIRST_OS + 3}")
    assert over.status_code == 429 and over.headers["retry-after"] == "30"
    assert "1 lookups of yours are waiting" in over.json()["error"]["message"]
    assert beta.post(f"/api/v1/scraping/os/{FIRST_OS + 3}").status_code == 202
    metrics = alpha.get("/metrics").text
    assert 'esteira_requests_rejected_total{reason="quota_exceeded"} 3.0' in metrics
