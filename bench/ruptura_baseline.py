"""The seeds' way of analysing a carteira, kept only to be measured against: one order at a time,
each line with its own queries for stock, production and planned outflows, the projection built
day by day in Python. It applies Esteira's (correct) rules, so both sides compute the same answer
and only the way of working differs."""

from datetime import date, timedelta

from sqlalchemy import Engine, select

from esteira_ruptura.tables import carteira_itens, estoque, programacao_producao, saidas_previstas


def _projection(connection, cod_produto: str, start: date, days: int) -> list[float]:
    end = start + timedelta(days=days)
    stock = connection.execute(
        select(estoque.c.qtd).where(estoque.c.cod_produto == cod_produto)
    ).scalar()
    inflows = connection.execute(
        select(programacao_producao.c.data, programacao_producao.c.qtd).where(
            programacao_producao.c.cod_produto == cod_produto,
            programacao_producao.c.data >= start,
            programacao_producao.c.data < end,
        )
    ).all()
    outflows = connection.execute(
        select(saidas_previstas.c.data, saidas_previstas.c.qtd).where(
            saidas_previstas.c.cod_produto == cod_produto, saidas_previstas.c.data < end
        )
    ).all()
    level = float(stock or 0.0)
    projected = []
    for day in range(days):
        when = start + timedelta(days=day)
        level += sum(q for d, q in inflows if d == when)
        level -= sum(q for d, q in outflows if d == when or (day == 0 and d < start))
        projected.append(level)
    return projected


def analyse_order(engine: Engine, num_pedido: str, start: date, days: int = 28, window: int = 7):
    """(num_pedido, [(in_rupture, ruptura_qtd, available_day or None) per line])."""
    with engine.connect() as connection:
        lines = connection.execute(
            select(carteira_itens.c.cod_produto, carteira_itens.c.qtd_saldo)
            .where(
                carteira_itens.c.num_pedido == num_pedido,
                carteira_itens.c.ativo.is_(True),
                carteira_itens.c.qtd_saldo > 0,
            )
            .order_by(carteira_itens.c.id)
        ).all()
        verdicts = []
        for cod_produto, qtd in lines:
            projected = _projection(connection, cod_produto, start, days)
            lowest = min(projected[: window + 1])
            in_rupture = qtd > lowest
            available = next(
                (
                    d
                    for d in range(days)
                    if min(projected[d : min(d + window, days - 1) + 1]) >= qtd
                ),
                None,
            )
            verdicts.append((in_rupture, qtd - max(lowest, 0) if in_rupture else 0.0, available))
    return num_pedido, verdicts
