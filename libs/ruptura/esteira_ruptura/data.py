"""Reading the carteira: a bounded number of queries per call, whatever the number of orders."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import cast

from sqlalchemy import Connection, Select, func, insert, select, update

from esteira_ruptura.models import OrderLine
from esteira_ruptura.projection import Horizon, Movement, Projection
from esteira_ruptura.tables import (
    carteira_itens,
    carteira_versao,
    estoque,
    programacao_producao,
    saidas_previstas,
)

# Bound parameters per IN (...): far below SQLite's and PostgreSQL's limits.
CHUNK = 900


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def carteira_version(connection: Connection) -> int:
    """How many times the carteira has been loaded: answers judged on one version of the data
    may be reused until the next load bumps it (0 before the first load)."""
    version = connection.execute(
        select(carteira_versao.c.versao).where(carteira_versao.c.id == 1)
    ).scalar_one_or_none()
    return 0 if version is None else int(version)


def bump_carteira_version(connection: Connection) -> int:
    """Called by every load, inside its transaction, so the new version and the new data are
    seen together; returns the new version. Concurrent loads queue on the row's lock."""
    bumped = connection.execute(
        update(carteira_versao)
        .where(carteira_versao.c.id == 1)
        .values(versao=carteira_versao.c.versao + 1)
    )
    if bumped.rowcount == 0:  # the row was never made (or was deleted): start again at 1
        connection.execute(insert(carteira_versao).values(id=1, versao=1))
    return carteira_version(connection)


_LINE_COLUMNS = (
    carteira_itens.c.num_pedido,
    carteira_itens.c.cod_produto,
    carteira_itens.c.nome_produto,
    carteira_itens.c.qtd_saldo,
    carteira_itens.c.preco,
    carteira_itens.c.data_expedicao,
    carteira_itens.c.cnpj,
    carteira_itens.c.cliente,
)


def _active_lines() -> Select[tuple[object, ...]]:
    return (
        select(*_LINE_COLUMNS)
        .where(carteira_itens.c.ativo.is_(True), carteira_itens.c.qtd_saldo > 0)
        .order_by(carteira_itens.c.num_pedido, carteira_itens.c.id)
    )


def load_lines(connection: Connection, order_numbers: Sequence[str] | None) -> list[OrderLine]:
    """Active open lines of the given orders (None: of every active order).

    The rows are SQLAlchemy's own: named tuples with OrderLine's fields in OrderLine's order, so
    copying 160,000 of them into OrderLine objects would only cost time.
    """
    if order_numbers is None:  # fetchall: one driver call for the whole carteira
        rows = connection.execute(_active_lines()).all()
    else:
        rows = [
            row
            for chunk in _chunks(order_numbers)
            for row in connection.execute(
                _active_lines().where(carteira_itens.c.num_pedido.in_(chunk))
            )
        ]
    return cast(list[OrderLine], rows)


def active_order_numbers(connection: Connection) -> list[str]:
    query = (
        select(carteira_itens.c.num_pedido)
        .where(carteira_itens.c.ativo.is_(True), carteira_itens.c.qtd_saldo > 0)
        .distinct()
        .order_by(carteira_itens.c.num_pedido)
    )
    return list(connection.execute(query).scalars())


def order_summaries(connection: Connection, limit: int) -> list[tuple[str, str]]:
    """(num_pedido, cliente) of the first active orders by number."""
    query = (
        select(carteira_itens.c.num_pedido, func.min(carteira_itens.c.cliente))
        .where(carteira_itens.c.ativo.is_(True), carteira_itens.c.qtd_saldo > 0)
        .group_by(carteira_itens.c.num_pedido)
        .order_by(carteira_itens.c.num_pedido)
        .limit(limit)
    )
    return [(number, cliente) for number, cliente in connection.execute(query)]


def load_projection(
    connection: Connection, horizon: Horizon, products: Sequence[str] | None
) -> Projection:
    """Stock, production and planned outflows of the products (None: all), in three queries
    (per chunk of products), projected over the horizon."""
    end = horizon.start + timedelta(days=horizon.days)
    stock_query = select(estoque.c.cod_produto, estoque.c.qtd)
    inflow_query = select(
        programacao_producao.c.cod_produto, programacao_producao.c.data, programacao_producao.c.qtd
    ).where(programacao_producao.c.data >= horizon.start, programacao_producao.c.data < end)
    outflow_query = select(
        saidas_previstas.c.cod_produto, saidas_previstas.c.data, saidas_previstas.c.qtd
    ).where(saidas_previstas.c.data < end)
    scopes: list[Sequence[str] | None] = [None] if products is None else list(_chunks(products))
    stock: dict[str, float] = {}
    inflows: list[Movement] = []
    outflows: list[Movement] = []
    for scope in scopes:
        queries = (stock_query, inflow_query, outflow_query)
        if scope is not None:
            queries = (
                stock_query.where(estoque.c.cod_produto.in_(scope)),
                inflow_query.where(programacao_producao.c.cod_produto.in_(scope)),
                outflow_query.where(saidas_previstas.c.cod_produto.in_(scope)),
            )
        for code, qtd in connection.execute(queries[0]):
            stock[code] = float(qtd)
        inflows += [Movement(c, d, float(q)) for c, d, q in connection.execute(queries[1])]
        outflows += [Movement(c, d, float(q)) for c, d, q in connection.execute(queries[2])]
    return Projection.build(horizon, stock, inflows, outflows)
