"""Scraping's tables: clientes, equipamentos and ordens_servico, written by the scrape and read
by the lookups."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Index, Integer, String, Table, func

from esteira_core.db.schema import metadata

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
