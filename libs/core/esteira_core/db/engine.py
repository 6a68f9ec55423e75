"""Engines are synchronous SQLAlchemy 2: the same data code runs in workers and in the gateway's
inline fallback (through a thread), and Alembic needs no second driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from esteira_core.db.patience import DatabaseNotAnswering, keep_patience
from esteira_core.settings import CoreSettings


def database_url(settings: CoreSettings) -> URL:
    url = make_url(settings.database_url)
    if settings.database_password is not None:
        url = url.set(password=settings.database_password.get_secret_value())
    return url


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the gateway read while a worker writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# What a failing database raises: refused, dropped, not answering, a lock held past the lock
# timeout (OperationalError), no pooled connection free in time, or a bounded read run out.
DATABASE_ERRORS = (OperationalError, PoolTimeout, DatabaseNotAnswering)
# A PostgreSQL server that does not answer (a host gone, its packets dropped) fails a connection
# after this long, not after the operating system's two minutes of retries.
CONNECT_TIMEOUT_SECONDS = 10
# And a connection whose server went away while it was open (a host powered off, a network cut)
# is closed by the operating system within about half a minute, instead of waiting on it for
# the kernel's defaults (two hours for an idle one, fifteen minutes for one whose query was not
# acknowledged): its thread and its place in the pool come back. libpq's names and units.
TCP_LIVENESS = {
    "keepalives": 1,
    "keepalives_idle": 10,  # s of silence before the first probe
    "keepalives_interval": 5,  # s between probes
    "keepalives_count": 3,  # probes unanswered: closed
    "tcp_user_timeout": 30_000,  # ms a sent query may stay unacknowledged
}


def create_db_engine(
    settings: CoreSettings | URL | str,
    *,
    lock_timeout_seconds: float | None = None,
    lock_timeout_per_transaction: bool = False,
) -> Engine:
    """An engine for the URL. `lock_timeout_seconds` (PostgreSQL): a statement that waits
    longer than that for a lock someone else holds (a migration, a DBA's transaction, a nightly
    load) fails with an OperationalError instead of waiting for as long as the lock is held.
    It is a connection's startup option, unless `lock_timeout_per_transaction`: then it is set
    in each transaction (SET LOCAL, a round trip more each), which a pooler in front of the
    database (PgBouncer) accepts where it may refuse startup options. A read waited for longer
    than the lock timeout and a margin hangs (the engine's Patience, esteira_core.db.patience)."""
    url = database_url(settings) if isinstance(settings, CoreSettings) else make_url(settings)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _enable_sqlite_pragmas)
        return engine
    # Given as connection arguments, they replace the URL's own: what the URL says is kept.
    defaults = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **TCP_LIVENESS}
    connect_args: dict[str, Any] = {
        name: value for name, value in defaults.items() if name not in url.query
    }
    lock_timeout_ms = (
        None if lock_timeout_seconds is None else max(1, round(lock_timeout_seconds * 1000))
    )
    if lock_timeout_ms is not None and not lock_timeout_per_transaction:
        options = url.query.get("options", "")
        own = " ".join(options) if isinstance(options, tuple) else options
        connect_args["options"] = f"{own} -c lock_timeout={lock_timeout_ms}".strip()
    engine = create_engine(
        url,
        pool_size=5,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    keep_patience(engine, lock_timeout_seconds)
    if lock_timeout_ms is not None and lock_timeout_per_transaction:
        event.listen(
            engine,
            "begin",
            lambda connection: connection.exec_driver_sql(
                f"SET LOCAL lock_timeout = {lock_timeout_ms}"
            ),
        )
    return engine


def ping(engine: Engine) -> None:
    """Raises unless the database answers a trivial query."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
