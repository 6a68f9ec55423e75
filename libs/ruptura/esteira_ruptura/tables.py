"""Ruptura's tables: the carteira (open order lines), stock, production schedule and planned
outflows. Esteira reads them; `esteira load-csv` and the demo seed write them."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Date, Float, Index, Integer, String, Table

from esteira_core.db.schema import metadata

carteira_itens = Table(
    "carteira_itens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("num_pedido", String(40), nullable=False),
    Column("cod_produto", String(40), nullable=False),
    Column("nome_produto", String(200), nullable=False, server_default=""),
    Column("qtd_saldo", Float, nullable=False),
    Column("preco", Float, nullable=False, server_default="0"),
    Column("data_expedicao", Date, nullable=True),
    Column("cnpj", String(20), nullable=False, server_default=""),
    Column("cliente", String(200), nullable=False, server_default=""),
    Column("ativo", Boolean, nullable=False, server_default="1"),
    Index("ix_carteira_itens_num_pedido", "num_pedido"),
    Index("ix_carteira_itens_cod_produto", "cod_produto"),
)

estoque = Table(
    "estoque",
    metadata,
    Column("cod_produto", String(40), primary_key=True),
    Column("qtd", Float, nullable=False),
)

programacao_producao = Table(
    "programacao_producao",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("cod_produto", String(40), nullable=False, index=True),
    Column("data", Date, nullable=False),
    Column("qtd", Float, nullable=False),
)

saidas_previstas = Table(
    "saidas_previstas",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("cod_produto", String(40), nullable=False, index=True),
    Column("data", Date, nullable=False),
    Column("qtd", Float, nullable=False),
)

# One row: how many times the carteira has been loaded. Every load bumps it in its own
# transaction, so an answer can be keyed on the data it was judged on.
carteira_versao = Table(
    "carteira_versao",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("versao", Integer, nullable=False, server_default="0"),
)
