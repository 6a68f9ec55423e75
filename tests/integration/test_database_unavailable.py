"""The gateway when its PostgreSQL database is not there for it: someone else's transaction
holds a table it reads (a migration, a DBA), the server is down, or it hangs. A client is told
to come back (503 with Retry-After and a clear error), in its API's shape; never a 500, never a
request that hangs for as long as the lock is held or the server hangs."""

import httpx
import pytest

from esteira_api.apikeys import generate_key, key_digest
from esteira_cli.processes import free_port
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_portal.records import FIRST_OS
from esteira_testing.components import PostgresServer, tables_locked
from esteira_testing.plugin import DEMO_PORTAL_PASSWORD, DEMO_PORTAL_USERNAME
from esteira_testing.waiting import wait_until

pytestmark = pytest.mark.integration
OS_NUMBER = "4242"


def _gateway(esteira_processes, redis_url: str, database_url: str, **env: str) -> httpx.Client:
    upgrade(create_db_engine(database_url).url)
    port = free_port()
    env = {
        "ESTEIRA_AUTH_DISABLED": "true",
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": database_url,
        "ESTEIRA_DATABASE_LOCK_TIMEOUT_SECONDS": "1",
        **env,
    }
    esteira_processes("api", ["api", "--port", str(port)], env, port=port)
    # Longer than the lock timeout, far shorter than the lock is held: a request that waits
    # for the lock fails the test with a ReadTimeout.
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15)


def _assert_told_to_come_back(answer: httpx.Response, error_code: str) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["error"]["code"] == error_code


def test_a_lookup_while_someone_holds_the_os_table_is_told_to_come_back_not_held(
    redis_url, postgres_server, esteira_processes
):
    database_url = postgres_server.create_database()
    api = _gateway(esteira_processes, redis_url, database_url)
    with tables_locked(database_url, "ordens_servico"):
        # Each lookup waited for as long as the lock was held, holding one of the gateway's
        # few threads: a handful of them stopped every lookup of the gateway.
        for _ in range(8):
            _assert_told_to_come_back(
                api.post(f"/api/v1/scraping/os/{OS_NUMBER}"), "database_unavailable"
            )
        seed = api.post(f"/api/desenvolvimento/buscar-os-async/{OS_NUMBER}")  # the seeds' route
        assert seed.status_code == 503
        assert seed.json()["success"] is False
    assert api.post(f"/api/v1/scraping/os/{OS_NUMBER}").status_code == 202  # a scrape queued


def test_a_front_end_on_another_origin_is_told_in_its_words_while_postgresql_is_down(
    redis_url, esteira_processes
):
    """Who meets it first: the ERP's page on another origin, calling with its API key. The
    503 must reach its script readable (CORS headers, Retry-After exposed), not as a network
    error; and the operator's readiness probe says so too."""
    server = PostgresServer().start()
    try:
        api = _erp_page(esteira_processes, redis_url, server.create_database())
        assert api.post(f"/api/v1/scraping/os/{OS_NUMBER}").status_code == 202
    finally:
        server.close()
    _assert_read_on_the_page(api.post(f"/api/v1/scraping/os/{OS_NUMBER}1"))
    assert api.get("/readyz").status_code == 503  # and the probe says so


ERP_ORIGIN = "https://erp.example"


def _erp_page(esteira_processes, redis_url: str, database_url: str) -> httpx.Client:
    """The ERP's page on another origin, calling a gateway with authentication on with its key."""
    key = generate_key()
    api = _gateway(
        esteira_processes,
        redis_url,
        database_url,
        ESTEIRA_AUTH_DISABLED="false",
        ESTEIRA_API_KEYS=f"erp:{key_digest(key)}",
        ESTEIRA_CORS_ORIGINS=ERP_ORIGIN,
    )
    api.headers.update({"Authorization": f"Bearer {key}", "Origin": ERP_ORIGIN})
    return api


def _assert_read_on_the_page(answer: httpx.Response) -> None:
    """A 503 the page's script can read: CORS headers, and Retry-After exposed to it."""
    _assert_told_to_come_back(answer, "database_unavailable")
    assert answer.headers["access-control-allow-origin"] in (ERP_ORIGIN, "*")
    assert "retry-after" in answer.headers["access-control-expose-headers"].lower()


def test_while_postgresql_hangs_requests_are_told_to_come_back_not_held(
    redis_url, esteira_processes
):
    """The server stops answering without closing anything (a paused VM, a disk that stalls):
    the gateway's pooled connections stay open, and a read on one waits for as long as the
    server hangs. Each request waited that long (the client gave up first), holding one of
    the gateway's few threads; now the first is told to come back after 5 s, the next ones at
    once, and the gateway answers again once the server does. Who meets it first: the ERP's
    page on another origin, with its key: each 503 must reach its script readable."""
    server = PostgresServer().start()
    try:
        api = _erp_page(esteira_processes, redis_url, server.create_database())
        assert api.post(f"/api/v1/scraping/os/{OS_NUMBER}").status_code == 202  # connected
        server.freeze()
        try:
            for number in range(8):  # the first waits out the 5 s, the next are told at once
                _assert_read_on_the_page(api.post(f"/api/v1/scraping/os/{OS_NUMBER}{number}"))
            _assert_read_on_the_page(api.post("/api/v1/ruptura/sessions", json={"all": True}))
            assert api.get("/readyz").status_code == 503  # the operator's probe says so too
            seed = api.post(f"/api/desenvolvimento/buscar-os-async/{OS_NUMBER}9")
            assert seed.status_code == 503 and seed.json()["success"] is False
        finally:
            server.thaw()
        wait_until(
            lambda: api.post(f"/api/v1/scraping/os/{OS_NUMBER}").status_code == 202,
            30,
            "the gateway did not answer again once PostgreSQL did",
        )
    finally:
        server.close()


def test_a_scrape_that_cannot_be_recorded_is_tried_again_not_failed_for_good(
    redis_url, postgres_server, esteira_processes, demo_portal
):
    """The portal answered, but the database would not take the OS (a lock held past the lock
    timeout): the lookup is tried again later, as a portal's own failure is, and succeeds once
    the lock is gone (it failed for good, as an internal error). Scraped by the gateway's own
    standby scraper: no worker is online."""
    database_url = postgres_server.create_database()
    api = _gateway(
        esteira_processes,
        redis_url,
        database_url,
        ESTEIRA_PORTAL_URL=demo_portal,
        ESTEIRA_PORTAL_USERNAME=DEMO_PORTAL_USERNAME,
        ESTEIRA_PORTAL_PASSWORD=DEMO_PORTAL_PASSWORD,
        ESTEIRA_SCRAPER_GRACE_SECONDS="0",
        ESTEIRA_SCRAPE_BACKOFF_SECONDS="1",
    )
    task_id = ""

    def task_once(*statuses: str) -> dict | None:
        found = api.get(f"/api/v1/scraping/tasks/{task_id}").json()
        return found if found["status"] in statuses else None

    # Writes to the table wait, reads do not: the lookup's read goes through, and the scraped
    # OS's record waits for the lock.
    with tables_locked(database_url, "clientes", mode="EXCLUSIVE"):
        task_id = api.post(f"/api/v1/scraping/os/{FIRST_OS}").json()["task_id"]
        first = wait_until(lambda: task_once("retrying", "failed", "success"), 90, "no attempt")
        assert first["status"] == "retrying", first
        assert first["error"]["code"] == "database_unavailable"
    ended = wait_until(lambda: task_once("success", "failed"), 90, "the lookup never ended")
    assert ended["status"] == "success" and ended["attempts"] >= 2, ended
