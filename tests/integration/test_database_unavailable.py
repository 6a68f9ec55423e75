"""The gateway when its PostgreSQL database is not there for it: someone else's transaction
holds a table it reads (a migration, a DBA), or the server is down. A client is told to come
back (503 with Retry-After and a clear error), in its API's shape; never a 500, never a request
that hangs for as long as the lock is held."""

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from esteira_cli.processes import free_port
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_testing.components import PostgresServer

pytestmark = pytest.mark.integration
OS_NUMBER = "4242"


@contextmanager
def os_table_locked(database_url: str) -> Iterator[None]:
    """Another transaction holds the recorded OS's table: whoever reads it waits for its end."""
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("LOCK TABLE ordens_servico IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        engine.dispose()


def _gateway(esteira_processes, redis_url: str, database_url: str) -> httpx.Client:
    upgrade(create_db_engine(database_url).url)
    port = free_port()
    env = {
        "ESTEIRA_AUTH_DISABLED": "true",
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": database_url,
        "ESTEIRA_DATABASE_LOCK_TIMEOUT_SECONDS": "1",
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
    with os_table_locked(database_url):
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


def test_a_lookup_while_postgresql_is_down_is_told_to_come_back(redis_url, esteira_processes):
    server = PostgresServer().start()
    try:
        api = _gateway(esteira_processes, redis_url, server.create_database())
        assert api.post(f"/api/v1/scraping/os/{OS_NUMBER}").status_code == 202
    finally:
        server.close()
    _assert_told_to_come_back(api.post(f"/api/v1/scraping/os/{OS_NUMBER}1"), "database_unavailable")
    assert api.get("/readyz").status_code == 503  # and the probe says so
