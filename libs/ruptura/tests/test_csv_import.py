"""esteira load-csv: whole files checked first, then one transaction (SQLite and PostgreSQL)."""

from datetime import date

import pytest
from sqlalchemy import func, select

from esteira_ruptura.csv_import import CsvRejected, load
from esteira_ruptura.demo import DemoSpec, seed_demo
from esteira_ruptura.tables import carteira_itens, estoque, programacao_producao

pytestmark = pytest.mark.integration


def count(engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_brazilian_export_is_loaded_whole(migrated_engine, tmp_path) -> None:
    carteira = tmp_path / "carteira.csv"
    carteira.write_text(
        "num_pedido;cod_produto;nome_produto;qtd_saldo;preco;data_expedicao;cnpj;cliente;ativo\n"
        "P-1;A;Parafuso;1.234,5;2,50;05/03/2026;11.222.333/0001-44;Cliente Um;sim\n"
        "P-1;B;Porca;10;0,10;;;;\n"
        "P-2;A;Parafuso;3;2.5;2026-03-06;;Cliente Dois;não\n",
        encoding="utf-8",
    )
    stock = tmp_path / "estoque.csv"
    stock.write_text("cod_produto,qtd\nA,100\nB,5\n")
    production = tmp_path / "producao.csv"
    production.write_text("cod_produto,data,qtd\nA,2026-03-10,50\n")
    counts = load(migrated_engine, {"carteira": carteira, "estoque": stock, "producao": production})
    assert counts == {"carteira": 3, "estoque": 2, "producao": 1}
    with migrated_engine.connect() as connection:
        first = (
            connection.execute(
                select(carteira_itens).where(
                    carteira_itens.c.cod_produto == "A", carteira_itens.c.num_pedido == "P-1"
                )
            )
            .mappings()
            .one()
        )
        inactive = connection.execute(
            select(carteira_itens.c.ativo).where(carteira_itens.c.num_pedido == "P-2")
        ).scalar_one()
    assert (first["qtd_saldo"], first["preco"], first["data_expedicao"]) == (
        1234.5,
        2.5,
        date(2026, 3, 5),
    )
    assert inactive is False


def test_a_bad_row_is_reported_by_line_and_nothing_is_loaded(migrated_engine, tmp_path) -> None:
    seed_demo(migrated_engine, DemoSpec(orders=20, products=10, seed=1))
    before = (count(migrated_engine, carteira_itens), count(migrated_engine, estoque))
    carteira = tmp_path / "carteira.csv"
    carteira.write_text(
        "num_pedido,cod_produto,qtd_saldo,data_expedicao\n"
        "P-1,A,5,2026-03-05\n"
        "P-2,A,cinco,2026-03-05\n"
        "P 3,A,1,31/02/2026\n"
    )
    stock = tmp_path / "estoque.csv"
    stock.write_text("produto,qtd\nA,1\n")
    with pytest.raises(CsvRejected) as rejected:
        load(migrated_engine, {"carteira": carteira, "estoque": stock})
    assert rejected.value.problems == [
        "carteira.csv:3: qtd_saldo 'cinco' is not a number",
        "carteira.csv:4: num_pedido is not an order number (no spaces, at most 40)",
        "carteira.csv:4: data_expedicao '31/02/2026' is not a date (YYYY-MM-DD or DD/MM/YYYY)",
        "estoque.csv:1: missing column(s) cod_produto",
    ]
    assert (count(migrated_engine, carteira_itens), count(migrated_engine, estoque)) == before
    assert count(migrated_engine, programacao_producao) > 0  # untouched: not among the files
