"""The one MetaData every domain's tables are defined on, with the naming convention the
migrations rely on. Core knows no domain: esteira_ruptura.tables and esteira_scraping.tables
add their tables here, and the migrations find them through the `esteira.tables` entry points."""

from __future__ import annotations

from importlib.metadata import entry_points

from sqlalchemy import MetaData

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def all_tables() -> MetaData:
    """The metadata with every installed domain's tables on it (their modules imported)."""
    for entry in entry_points(group="esteira.tables"):
        entry.load()
    return metadata
