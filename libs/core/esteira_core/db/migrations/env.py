"""Alembic environment: the URL comes from the caller (esteira db upgrade), never from a file."""

from __future__ import annotations

from alembic import context

from esteira_core.db.engine import create_db_engine
from esteira_core.db.schema import all_tables

engine = create_db_engine(context.config.attributes["database_url"])
try:
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=all_tables(),
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
finally:
    engine.dispose()
