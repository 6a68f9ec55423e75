"""`esteira db upgrade`: Alembic migrations, configured in code (no alembic.ini to keep in sync)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, text

from esteira_core.db.engine import create_db_engine, database_url
from esteira_core.logging import configure_logging
from esteira_core.settings import CoreSettings

MIGRATIONS = Path(__file__).with_name("migrations")
# The PostgreSQL advisory lock every migrator takes (any constant bigint, the same everywhere).
MIGRATION_LOCK = 0x657374656972  # "esteir"


def alembic_config(url: URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


@contextmanager
def migration_lock(url: URL) -> Iterator[None]:
    """Holds PostgreSQL's advisory lock MIGRATION_LOCK (a no-op on SQLite, whose file lock
    already serializes writers). Every gateway pod migrates in its init container when a
    rollout starts them together: without the lock two of them create the same tables at once
    and one fails (UniqueViolation on pg_type); with it they take turns, and the later ones
    find the schema at head and do nothing. The lock is a session lock on a connection of its
    own, so it holds across Alembic's transaction and ends with the connection even if the
    process dies."""
    if url.get_backend_name() != "postgresql":
        yield
        return
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()
    finally:
        engine.dispose()


def upgrade(url: URL, revision: str = "head") -> None:
    with migration_lock(url):
        command.upgrade(alembic_config(url), revision)


def upgrade_configured(log_format: str | None = None) -> None:
    """Every migration applied to ESTEIRA_DATABASE_URL: what `esteira db upgrade` and, in a
    cluster, the gateway's init container (`python -m esteira_core.db.migrate`) run."""
    settings = CoreSettings()
    configure_logging(settings.log_level, log_format or settings.log_format)
    upgrade(database_url(settings))


if __name__ == "__main__":
    upgrade_configured()
