"""Work a gateway does itself, because no worker serves the queue, outlives the gateway: killed
with SIGTERM or SIGKILL in the middle of a session, with Redis up, then restarted beside a
worker, it loses no order and counts none twice, and leaves no browser of its own behind."""

import os
import signal

import httpx
import pytest
import redis

from esteira_cli.processes import free_port
from esteira_portal.records import FIRST_OS
from esteira_scraping.processes import descendants
from esteira_testing.components import seeded_database
from esteira_testing.plugin import DEMO_PORTAL_PASSWORD, DEMO_PORTAL_USERNAME
from esteira_testing.ruptura import session_results
from esteira_testing.waiting import alive, wait_until

pytestmark = pytest.mark.integration
REFERENCE = "2026-03-02"
# Enough that a session the gateway copies from the judged carteira, 25 batches a job, is
# still running when its gateway is stopped.
ORDERS = 10_000


@pytest.mark.parametrize("kill_with", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_session_run_inline_outlives_its_gateway(
    kill_with, redis_url, tmp_path, esteira_processes, demo_portal
):
    env = {
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": seeded_database(
            f"sqlite:///{tmp_path / 'inline.db'}", orders=ORDERS, products=60
        ),
        "ESTEIRA_AUTH_DISABLED": "true",
        "ESTEIRA_RUPTURA_GRACE_SECONDS": "0.5",
        "ESTEIRA_SCRAPER_GRACE_SECONDS": "0.5",
        "ESTEIRA_QUEUE_CHECK_SECONDS": "0.1",
        "ESTEIRA_INLINE_RUPTURA_JOBS": "1",
        "ESTEIRA_PORTAL_URL": demo_portal,
        "ESTEIRA_PORTAL_USERNAME": DEMO_PORTAL_USERNAME,
        "ESTEIRA_PORTAL_PASSWORD": DEMO_PORTAL_PASSWORD,
    }

    def gateway():
        port = free_port()
        process = esteira_processes(f"api-{port}", ["api", "--port", str(port)], env, port=port)
        return process, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    doomed, api = gateway()
    # No scraper worker: the gateway scrapes the OS itself, and keeps its browser for the next.
    task_id = api.post(f"/api/v1/scraping/os/{FIRST_OS}").json()["task_id"]
    wait_until(
        lambda: api.get(f"/api/v1/scraping/tasks/{task_id}").json()["status"] == "success",
        60,
        "the gateway never scraped the OS itself",
    )
    browsers = descendants(doomed.process.pid)
    assert browsers, "the gateway's browser is not running"

    # No ruptura worker either: the gateway serves the session's queue itself.
    body = {"all": True, "reference_date": REFERENCE}
    session_id = api.post("/api/v1/ruptura/sessions", json=body).json()["session_id"]
    wait_until(
        lambda: api.get(f"/api/v1/ruptura/sessions/{session_id}").json()["processed"] > 0,
        60,
        "the gateway never started the session",
    )
    os.kill(doomed.process.pid, kill_with)  # the gateway alone, as a crash or a rollout would
    doomed.process.wait(30)
    store = redis.Redis.from_url(redis_url)
    processed = store.llen(f"esteira:ruptura:session:{session_id}:results")
    assert 0 < processed < ORDERS, "the gateway was not stopped in the middle of the session"

    wait_until(
        lambda: not any(alive(pid) for pid in browsers), 10, "the gateway's browser survived"
    )

    port = free_port()
    esteira_processes(
        "ruptura-worker", ["worker", "ruptura"], {**env, "ESTEIRA_METRICS_PORT": str(port)}, port
    )
    _, api = gateway()
    numbers = [result["num_pedido"] for result in session_results(api, session_id, timeout=90)]
    assert len(numbers) == len(set(numbers)) == ORDERS
    assert store.hget(f"esteira:ruptura:session:{session_id}", "status") == b"done"
