"""Migrations and the engine, on SQLite and on a real PostgreSQL."""

import os
import socket
import subprocess
import sys

import pytest
from sqlalchemy import Engine, inspect, text

from esteira_core.db import create_db_engine, ping
from esteira_core.db.migrate import upgrade
from esteira_core.db.schema import all_tables

pytestmark = pytest.mark.integration


def test_upgrade_creates_every_table_of_the_schema(migrated_engine: Engine) -> None:
    tables = set(inspect(migrated_engine).get_table_names())
    assert set(all_tables().tables) <= tables
    assert "alembic_version" in tables


def test_upgrade_twice_changes_nothing(migrated_engine: Engine) -> None:
    upgrade(migrated_engine.url)
    with migrated_engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    assert len(versions) == 1


def test_the_migrated_schema_matches_the_models(migrated_engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with migrated_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), all_tables())
    assert diff == []


def test_ping_fails_on_an_unreachable_database() -> None:
    engine = create_db_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(Exception, match="(?i)connect"):
        ping(engine)


def _tcp_options(engine: Engine) -> dict[str, int]:
    """The TCP options the operating system holds for a pooled connection's socket."""
    with engine.connect() as connection:
        descriptor = os.dup(connection.connection.dbapi_connection.fileno())
    with socket.socket(fileno=descriptor) as sock:
        return {
            "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            "user_timeout_ms": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        }


def test_a_connection_to_a_server_gone_silent_is_closed_in_half_a_minute(postgres_server) -> None:
    """What an operator's network cut leaves: an open connection whose server no longer
    answers. The operating system closes it (keepalive probes, unacknowledged data) within
    about 30 s, instead of two hours; a URL's own settings are kept."""
    url = postgres_server.create_database()
    engine = create_db_engine(url)
    assert _tcp_options(engine) == {
        "keepalive": 1,
        "idle": 10,
        "interval": 5,
        "count": 3,
        "user_timeout_ms": 30_000,
    }
    engine.dispose()
    own = create_db_engine(f"{url}?keepalives_idle=60&tcp_user_timeout=5000")
    assert _tcp_options(own)["idle"] == 60 and _tcp_options(own)["user_timeout_ms"] == 5000
    own.dispose()


def test_concurrent_migrations_of_a_fresh_postgresql_never_fail(postgres_server) -> None:
    """As a rollout starts several gateway pods, each migrating in its init container: three
    `python -m esteira_core.db.migrate` at once on a fresh database, five times over."""
    for trial in range(5):
        url = postgres_server.create_database()
        env = {**os.environ, "ESTEIRA_DATABASE_URL": url, "ESTEIRA_LOG_FORMAT": "text"}
        migrators = [
            subprocess.Popen(
                [sys.executable, "-m", "esteira_core.db.migrate"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(3)
        ]
        try:
            outputs = [m.communicate(timeout=120)[0] for m in migrators]
        finally:
            for migrator in migrators:
                if migrator.poll() is None:
                    migrator.kill()
                    migrator.wait()
        failed = [out for m, out in zip(migrators, outputs, strict=True) if m.returncode != 0]
        assert not failed, f"trial {trial}: " + "\n".join(failed)
        engine = create_db_engine(url)
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        engine.dispose()
        assert len(versions) == 1


def test_a_lock_timeout_keeps_the_urls_own_options(postgres_server) -> None:
    """An operator's `options` in the database URL (a search_path) still reach the server when
    the engine adds its lock timeout: given as connection arguments, they replaced the URL's."""
    url = postgres_server.create_database() + "?options=-csearch_path%3Dcarteira,public"
    engine = create_db_engine(url, lock_timeout_seconds=1.5)
    try:
        with engine.connect() as connection:
            shown = [
                connection.execute(text(f"SHOW {name}")).scalar_one()
                for name in ("search_path", "lock_timeout")
            ]
    finally:
        engine.dispose()
    assert shown == ["carteira,public", "1500ms"]
