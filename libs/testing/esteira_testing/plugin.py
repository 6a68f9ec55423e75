"""Esteira's pytest plugin: real components on free loopback ports, always torn down.

Fixtures:
- `redis_server` (session) and `redis_url` (a flushed database per test); `own_redis_server`
  (per test, for fault injection: stop, kill, restart); `redis_sentinel_cluster` (per test: a
  primary, a replica and three Sentinels; kill the primary, wait for the promotion).
- `postgres_server` (session) and `database_url`, parametrized over SQLite and PostgreSQL so every
  database test runs on both; `migrated_engine` is that database at the newest migration.
- `start_prometheus(targets)`, `chromium` (a headless Chromium webdriver),
  `esteira_processes` (starts `esteira api/worker/portal` processes and stops them after the test),
  `demo_portal` (the demo portal's URL, its account DEMO_PORTAL_USERNAME / DEMO_PORTAL_PASSWORD).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine

from esteira_cli.processes import free_port
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_scraping.browser import Browser
from esteira_testing.components import (
    EsteiraProcess,
    PostgresServer,
    PrometheusServer,
    RedisSentinelCluster,
    RedisServer,
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if redis_server.process is None or not redis_server.process.running():
        redis_server.start()
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A Redis of this test's own, free to be stopped, killed and restarted."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_sentinel_cluster() -> Iterator[RedisSentinelCluster]:
    """A primary, a replica and three Sentinels of this test's own (`sentinels`, `MASTER_NAME`,
    `env` for Esteira processes, `kill_primary()`, `wait_for_promotion(old_port)`)."""
    cluster = RedisSentinelCluster()
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database; the test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'esteira.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def migrated_engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    upgrade(engine.url)
    yield engine
    engine.dispose()


@pytest.fixture
def start_prometheus() -> Iterator[Callable[..., PrometheusServer]]:
    servers: list[PrometheusServer] = []

    def start(
        targets: dict[str, Sequence[str]],
        rule_files: Sequence[Path] = (),
        labels: Mapping[str, str] | None = None,
    ) -> PrometheusServer:
        server = PrometheusServer(targets, rule_files, labels)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def chromium() -> Iterator[Browser]:
    browser = Browser()
    yield browser
    browser.quit()


@pytest.fixture
def esteira_processes(tmp_path: Path) -> Iterator[Callable[..., EsteiraProcess]]:
    """Starts Esteira processes for the test; each is stopped (its whole group) afterwards.

    On failure the processes' output is printed, so a failing integration test explains itself.
    """
    started: list[EsteiraProcess] = []

    def start(
        name: str, args: Sequence[str], env: dict[str, str], port: int | None = None
    ) -> EsteiraProcess:
        process = EsteiraProcess(name, args, env, tmp_path)
        started.append(process)
        return process.start(port)

    yield start
    for process in reversed(started):
        process.stop()
        log = process.log_path.read_text(errors="replace")
        if log:
            print(f"\n----- {process.process.name} output -----\n{log[-6000:]}")  # noqa: T201


DEMO_PORTAL_USERNAME = "ana"
DEMO_PORTAL_PASSWORD = "s3nha"


@pytest.fixture
def demo_portal(esteira_processes: Callable[..., EsteiraProcess]) -> str:
    """The demo portal on a free port, with one account; its base URL."""
    port = free_port()
    esteira_processes(
        "portal",
        ["portal", "--port", str(port)],
        {
            "ESTEIRA_PORTAL_USERNAME": DEMO_PORTAL_USERNAME,
            "ESTEIRA_PORTAL_PASSWORD": DEMO_PORTAL_PASSWORD,
        },
        port=port,
    )
    return f"http://127.0.0.1:{port}"
