"""The SQL layer: one engine factory for SQLite and PostgreSQL, the schema, the migrations
(`esteira_core.db.migrate`, imported only by what migrates, so services don't load Alembic)."""

from esteira_core.db.engine import DATABASE_ERRORS, create_db_engine, database_url, ping
from esteira_core.db.patience import DatabaseNotAnswering

__all__ = ["DATABASE_ERRORS", "DatabaseNotAnswering", "create_db_engine", "database_url", "ping"]
