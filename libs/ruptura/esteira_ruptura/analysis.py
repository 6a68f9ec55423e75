"""The analysis itself: pure functions over numpy arrays, no I/O.

- A line is in rupture when qtd_saldo > min(P[0..W]); ruptura_qtd = qtd_saldo − max(min, 0).
- Its availability day is the first d with min(P[d..min(d+W, H−1)]) ≥ qtd_saldo, or none.
- `independent` mode judges every line against the product's projection alone (the seeds'
  semantics); `allocated` mode serves lines in priority order (ship date, then order number) and
  each feasible line reserves its quantity from its availability day onwards, so later lines see
  only what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from numpy.typing import NDArray

from esteira_ruptura.models import Criticidade, ItemReport, OrderLine, OrderReport
from esteira_ruptura.projection import FloatArray, Horizon, IntArray, Projection, forward_window_min

NO_DAY = -1


@dataclass(frozen=True)
class LineVerdicts:
    """Per line, aligned with the lines judged."""

    min_window: FloatArray  # min(P[0..W]) as the line saw it
    in_rupture: NDArray[np.bool_]
    ruptura_qtd: FloatArray
    available_day: IntArray  # NO_DAY: sem previsão


def judge(quantities: FloatArray, projected: FloatArray, window: int) -> LineVerdicts:
    """Vectorized rules for lines (rows of `projected` aligned with `quantities`)."""
    min_window = projected[:, : window + 1].min(axis=1)
    in_rupture = quantities > min_window
    ruptura_qtd = np.where(in_rupture, quantities - np.maximum(min_window, 0.0), 0.0)
    feasible = forward_window_min(projected, window) >= quantities[:, None]
    available_day = np.where(feasible.any(axis=1), feasible.argmax(axis=1), NO_DAY)
    return LineVerdicts(min_window, in_rupture, ruptura_qtd, available_day.astype(np.int64))


def judge_independent(lines: Sequence[OrderLine], projection: Projection) -> LineVerdicts:
    quantities = np.fromiter((line.qtd_saldo for line in lines), dtype=np.float64, count=len(lines))
    rows = projection.projected[projection.rows_for(line.cod_produto for line in lines)]
    return judge(quantities, rows, projection.horizon.window)


def priority_key(line: OrderLine) -> tuple[date, str, str]:
    """Ship date first (undated lines last), then order number, then product (stable ties)."""
    return (line.data_expedicao or date.max, line.num_pedido, line.cod_produto)


def allocate(lines: Sequence[OrderLine], projection: Projection) -> LineVerdicts:
    """Serves `lines` in priority order against shared stock; verdicts come back in input order."""
    horizon = projection.horizon
    count = len(lines)
    available = projection.projected.copy()
    rows = projection.rows_for(line.cod_produto for line in lines)
    min_window = np.zeros(count)
    in_rupture = np.zeros(count, dtype=bool)
    ruptura_qtd = np.zeros(count)
    available_day = np.full(count, NO_DAY, dtype=np.int64)
    for index in sorted(range(count), key=lambda i: priority_key(lines[i])):
        quantity = lines[index].qtd_saldo
        remaining = available[rows[index]]  # a view: reservations write through
        verdict = judge(np.array([quantity]), remaining[None, :], horizon.window)
        min_window[index] = verdict.min_window[0]
        in_rupture[index] = verdict.in_rupture[0]
        ruptura_qtd[index] = verdict.ruptura_qtd[0]
        day = int(verdict.available_day[0])
        available_day[index] = day
        if day != NO_DAY:
            remaining[day:] -= quantity
    return LineVerdicts(min_window, in_rupture, ruptura_qtd, available_day)


def criticidade(items_in_rupture: int, percent_value_in_rupture: float) -> Criticidade:
    """CRITICA: > 3 items and > 10 %; ALTA: > 3 items or > 10 %; MEDIA: > 1 item or > 5 %."""
    if items_in_rupture > 3 and percent_value_in_rupture > 10:
        return Criticidade.CRITICA
    if items_in_rupture > 3 or percent_value_in_rupture > 10:
        return Criticidade.ALTA
    if items_in_rupture > 1 or percent_value_in_rupture > 5:
        return Criticidade.MEDIA
    return Criticidade.BAIXA


def group_by_order(lines: Sequence[OrderLine]) -> dict[str, list[int]]:
    """Indexes of each order's lines, in line order."""
    groups: dict[str, list[int]] = {}
    for index, line in enumerate(lines):
        groups.setdefault(line.num_pedido, []).append(index)
    return groups


def report_orders(
    groups: dict[str, list[int]],
    lines: Sequence[OrderLine],
    verdicts: LineVerdicts,
    horizon: Horizon,
    mode: str,
) -> dict[str, OrderReport]:
    """One report per order of `groups` (order number -> indexes of its judged lines)."""
    reports: dict[str, OrderReport] = {}
    for num_pedido, indexes in groups.items():
        items = [_item(lines[i], verdicts, i, horizon) for i in indexes]
        reports[num_pedido] = _order(num_pedido, [lines[i] for i in indexes], items, mode)
    return reports


def _item(line: OrderLine, verdicts: LineVerdicts, index: int, horizon: Horizon) -> ItemReport:
    day = int(verdicts.available_day[index])
    return ItemReport(
        cod_produto=line.cod_produto,
        nome_produto=line.nome_produto,
        qtd_saldo=line.qtd_saldo,
        preco=line.preco,
        valor=round(line.qtd_saldo * line.preco, 2),
        menor_estoque_d7=round(float(verdicts.min_window[index]), 3),
        ruptura=bool(verdicts.in_rupture[index]),
        ruptura_qtd=round(float(verdicts.ruptura_qtd[index]), 3),
        data_disponibilidade=None if day == NO_DAY else horizon.day(day),
    )


def _order(
    num_pedido: str, lines: list[OrderLine], items: list[ItemReport], mode: str
) -> OrderReport:
    total = sum(item.qtd_saldo * item.preco for item in items)
    in_rupture = [item for item in items if item.ruptura]
    value_in_rupture = sum(item.ruptura_qtd * item.preco for item in items)
    if total > 0:
        percent_in_rupture = 100.0 * value_in_rupture / total
    else:  # lines without a price: weigh them equally
        percent_in_rupture = 100.0 * len(in_rupture) / len(items)
    dates = [item.data_disponibilidade for item in items]
    sem_previsao = any(when is None for when in dates)
    first = lines[0]
    return OrderReport(
        num_pedido=num_pedido,
        mode=mode,
        cliente=first.cliente,
        cnpj=first.cnpj,
        data_expedicao=min(
            (line.data_expedicao for line in lines if line.data_expedicao), default=None
        ),
        qtd_itens=len(items),
        qtd_itens_ruptura=len(in_rupture),
        qtd_itens_disponiveis=len(items) - len(in_rupture),
        valor_total=round(total, 2),
        valor_ruptura=round(value_in_rupture, 2),
        percentual_disponibilidade=round(100.0 - percent_in_rupture, 2),
        percentual_ruptura=round(percent_in_rupture, 2),
        data_disponibilidade_total=None if sem_previsao else max(d for d in dates if d is not None),
        sem_previsao=sem_previsao,
        coberto_pelo_estoque=not in_rupture,
        criticidade=criticidade(len(in_rupture), percent_in_rupture),
        itens=items,
    )
