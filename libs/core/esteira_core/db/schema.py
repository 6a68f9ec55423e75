"""The tables, in one metadata shared by the migrations and the data code.

Ruptura reads the carteira (open order lines), stock, production schedule and planned outflows;
scraping writes clientes, equipamentos and ordens_servico, which the gateway reads.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# --- ruptura --------------------------------------------------------------------------------
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

# --- scraping -------------------------------------------------------------------------------
clientes = Table(
    "clientes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("cnpj", String(14), nullable=True, unique=True),
    Column("nome", String(200), nullable=False),
    Column("nome_normalizado", String(200), nullable=False, index=True),
    Column("municipio", String(120), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

equipamentos = Table(
    "equipamentos",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("numero_serie", String(80), nullable=True, unique=True),
    Column("tipo", String(120), nullable=True),
    Column("descricao", String(300), nullable=True),
    Column("fabricante", String(120), nullable=True),
    Column("modelo", String(120), nullable=True),
    Column("cliente_id", ForeignKey("clientes.id"), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_equipamentos_identity", "fabricante", "modelo", "descricao"),
)

ordens_servico = Table(
    "ordens_servico",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("numero_os", String(20), nullable=False, unique=True),
    Column("status", String(120), nullable=True),
    Column("cliente_id", ForeignKey("clientes.id"), nullable=True),
    Column("equipamento_id", ForeignKey("equipamentos.id"), nullable=True),
    Column("raw_fields", JSON, nullable=False),
    Column("scraped_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
