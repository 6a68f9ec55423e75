"""The carteira version: bumped by every load, in the load's own transaction (SQLite and
PostgreSQL)."""

from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, insert, select

from esteira_ruptura.csv_import import CsvRejected, load
from esteira_ruptura.data import bump_carteira_version, carteira_version
from esteira_ruptura.demo import DemoSpec, seed_demo
from esteira_ruptura.tables import carteira_versao, estoque

pytestmark = pytest.mark.integration


def version(engine: Engine) -> int:
    with engine.connect() as connection:
        return carteira_version(connection)


def test_every_load_bumps_the_version_and_a_refused_one_does_not(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    assert version(migrated_engine) == 0
    seed_demo(migrated_engine, DemoSpec(orders=10, products=5, seed=1))
    assert version(migrated_engine) == 1
    stock = tmp_path / "estoque.csv"
    stock.write_text("cod_produto;qtd\nA;1\n")
    load(migrated_engine, {"estoque": stock})
    load(migrated_engine, {"estoque": stock})  # the same data again is still a load
    assert version(migrated_engine) == 3
    stock.write_text("produto;qtd\nA;1\n")
    with pytest.raises(CsvRejected):
        load(migrated_engine, {"estoque": stock})
    assert version(migrated_engine) == 3


def test_the_new_version_is_seen_with_the_new_data_and_not_before(
    migrated_engine: Engine,
) -> None:
    with migrated_engine.connect() as writer, migrated_engine.connect() as reader:
        with writer.begin():
            writer.execute(insert(estoque), [{"cod_produto": "A", "qtd": 5.0}])
            assert bump_carteira_version(writer) == 1
            with reader.begin():  # another connection, while the load is not committed
                assert carteira_version(reader) == 0
                assert reader.execute(select(func.count()).select_from(estoque)).scalar() == 0
        with reader.begin():
            assert carteira_version(reader) == 1
            assert reader.execute(select(func.count()).select_from(estoque)).scalar() == 1


def test_a_rolled_back_load_leaves_the_version(migrated_engine: Engine) -> None:
    with migrated_engine.connect() as connection:
        with connection.begin() as transaction:
            bump_carteira_version(connection)
            transaction.rollback()
        assert carteira_version(connection) == 0


def test_a_lost_version_row_starts_again(migrated_engine: Engine) -> None:
    with migrated_engine.begin() as connection:
        connection.execute(delete(carteira_versao))
        assert carteira_version(connection) == 0
        assert bump_carteira_version(connection) == 1
        assert bump_carteira_version(connection) == 2
