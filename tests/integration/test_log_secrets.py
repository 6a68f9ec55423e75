"""At ESTEIRA_LOG_LEVEL=DEBUG a real scrape writes no secret: Selenium's remote connection logs
each WebDriver command's body at DEBUG, the password typed into the portal among them, so the
libraries that log what they send stay at INFO (esteira_core.logging)."""

import time

import httpx
import pytest

from esteira_api.apikeys import generate_key, key_digest
from esteira_cli.processes import free_port
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_portal.records import FIRST_OS
from esteira_testing.plugin import DEMO_PORTAL_PASSWORD, DEMO_PORTAL_USERNAME

pytestmark = pytest.mark.integration


def test_a_scrape_at_debug_logs_neither_the_portal_password_nor_the_api_key(
    redis_url, demo_portal, esteira_processes, tmp_path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'secrets.db'}"
    engine = create_db_engine(database_url)
    upgrade(engine.url)
    engine.dispose()
    key = generate_key()
    env = {
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": database_url,
        "ESTEIRA_PORTAL_URL": demo_portal,
        "ESTEIRA_PORTAL_USERNAME": DEMO_PORTAL_USERNAME,
        "ESTEIRA_PORTAL_PASSWORD": DEMO_PORTAL_PASSWORD,
        "ESTEIRA_API_KEYS": f"vendas:{key_digest(key)}",
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "ESTEIRA_LOG_LEVEL": "DEBUG",
        "ESTEIRA_LOG_FORMAT": "json",
    }
    metrics_port, api_port = free_port(), free_port()
    worker = esteira_processes(
        "scraper",
        ["worker", "scraper"],
        {**env, "ESTEIRA_METRICS_PORT": str(metrics_port)},
        port=metrics_port,
    )
    api = esteira_processes("api", ["api", "--port", str(api_port)], env, port=api_port)
    with httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as client:
        queued = client.post(f"/api/v1/scraping/os/{FIRST_OS + 1}")
        assert queued.status_code == 202, queued.text
        deadline = time.monotonic() + 90
        while (task := client.get(f"/api/v1/scraping/tasks/{queued.json()['task_id']}").json())[
            "status"
        ] not in ("success", "failed"):
            assert time.monotonic() < deadline, task
            time.sleep(0.2)
    assert task["status"] == "success", task  # the browser logged in with the password

    assert '"level": "debug"' in worker.output()  # DEBUG really was on
    for process in (worker, api):
        output = process.output()
        assert DEMO_PORTAL_PASSWORD not in output
        assert key not in output
