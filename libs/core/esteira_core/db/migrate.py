"""`esteira db upgrade`: Alembic migrations, configured in code (no alembic.ini to keep in sync)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import URL

from esteira_core.db.engine import database_url
from esteira_core.logging import configure_logging
from esteira_core.settings import CoreSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def upgrade(url: URL, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def upgrade_configured(log_format: str | None = None) -> None:
    """Every migration applied to ESTEIRA_DATABASE_URL: what `esteira db upgrade` and, in a
    cluster, the gateway's init container (`python -m esteira_core.db.migrate`) run."""
    settings = CoreSettings()
    configure_logging(settings.log_level, log_format or settings.log_format)
    upgrade(database_url(settings))


if __name__ == "__main__":
    upgrade_configured()
