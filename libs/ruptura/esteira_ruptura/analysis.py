"""The analysis itself: pure functions over numpy arrays, no I/O.

- A line is in rupture when qtd_saldo > min(P[0..W]); ruptura_qtd = qtd_saldo − max(min, 0).
- Its availability day is the first d with min(P[d..min(d+W, H−1)]) ≥ qtd_saldo, or none.
- Per order, as the original system does: `valor_ruptura` is the whole value (qtd_saldo × preco)
  of the lines in rupture, and the availability percentage and the criticidade come from it; the
  missing value (ruptura_qtd × preco) is reported beside it as `valor_faltante`. An order worth 0
  is weighed by line count instead.
- `independent` mode judges every line against the product's projection alone (the seeds'
  semantics); `allocated` mode serves lines in priority order (ship date, then order number) and
  each feasible line reserves its quantity from its availability day onwards, so later lines see
  only what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from numpy.typing import NDArray

from esteira_ruptura.models import Criticidade, OrderLine
from esteira_ruptura.projection import FloatArray, Horizon, IntArray, Projection, forward_window_min

NO_DAY = -1


@dataclass(frozen=True)
class LineVerdicts:
    """Per line, aligned with the lines judged."""

    min_window: FloatArray  # min(P[0..W]) as the line saw it
    in_rupture: NDArray[np.bool_]
    ruptura_qtd: FloatArray
    available_day: IntArray  # NO_DAY: sem previsão


def _verdicts(quantities: FloatArray, min_window: FloatArray, ahead: FloatArray) -> LineVerdicts:
    """The rules, for lines aligned with `min_window` (min P[0..W]) and `ahead` (each day's
    forward window minimum)."""
    in_rupture = quantities > min_window
    ruptura_qtd = np.where(in_rupture, quantities - np.maximum(min_window, 0.0), 0.0)
    feasible = ahead >= quantities[:, None]
    available_day = np.where(feasible.any(axis=1), feasible.argmax(axis=1), NO_DAY)
    return LineVerdicts(min_window, in_rupture, ruptura_qtd, available_day.astype(np.int64))


def judge(quantities: FloatArray, projected: FloatArray, window: int) -> LineVerdicts:
    """Vectorized rules for lines (rows of `projected` aligned with `quantities`)."""
    return _verdicts(
        quantities, projected[:, : window + 1].min(axis=1), forward_window_min(projected, window)
    )


def judge_independent(lines: Sequence[OrderLine], projection: Projection) -> LineVerdicts:
    """Every line against its product's projection; the window minima are computed once per
    product, not once per line."""
    quantities = np.fromiter((line[3] for line in lines), dtype=np.float64, count=len(lines))
    rows = projection.rows_for(line[1] for line in lines)  # cod_produto (indexing is fastest)
    return _verdicts(quantities, projection.head_min[rows], projection.ahead_min[rows])


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
        groups.setdefault(line[0], []).append(index)  # num_pedido
    return groups


def report_orders(
    groups: dict[str, list[int]],
    lines: Sequence[OrderLine],
    verdicts: LineVerdicts,
    horizon: Horizon,
    mode: str,
) -> dict[str, dict[str, Any]]:
    """One report per order of `groups` (order number -> indexes of its judged lines), as the
    JSON-ready dicts clients receive; `OrderReport` is their schema.

    Plain dicts, not models: a 20,000-order session builds some 160,000 item reports, and
    validating each would cost more than the analysis itself. For the same reason every sum
    and count per order is computed at once over all the orders' lines (each order's lines are
    one segment of them), and Python only assembles the dicts.
    """
    if not groups:
        return {}
    day_text = [horizon.day(day).isoformat() for day in range(horizon.days)] + [None]
    # Only the lines reported are converted: `verdicts` may cover the whole carteira.
    chosen_list = [index for indexes in groups.values() for index in indexes]
    chosen = np.array(chosen_list, dtype=np.int64)
    rows = [lines[index] for index in chosen_list]
    counts = np.fromiter((len(indexes) for indexes in groups.values()), np.int64, len(groups))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))

    quantity = np.fromiter((row[3] for row in rows), np.float64, len(rows))
    price = np.fromiter((row[4] for row in rows), np.float64, len(rows))
    value = quantity * price
    in_rupture = verdicts.in_rupture[chosen]
    missing = np.round(verdicts.ruptura_qtd[chosen], 3)
    available_day = verdicts.available_day[chosen]
    # Per order (NO_DAY is -1: an order has one when its smallest day is).
    total = np.add.reduceat(value, starts)
    value_in_rupture = np.add.reduceat(np.where(in_rupture, value, 0.0), starts)
    missing_value = np.add.reduceat(missing * price, starts)
    items_in_rupture = np.add.reduceat(in_rupture.astype(np.int64), starts)
    sem_previsao = np.minimum.reduceat(available_day, starts) == NO_DAY
    latest_day = np.maximum.reduceat(available_day, starts)
    percent_in_rupture = np.where(
        total > 0,
        100.0 * value_in_rupture / np.where(total > 0, total, 1.0),
        100.0 * items_in_rupture / counts,  # an order worth 0: weigh its lines equally
    )
    severities = [
        criticidade(ruptures, percent).value
        for ruptures, percent in zip(
            items_in_rupture.tolist(), percent_in_rupture.tolist(), strict=True
        )
    ]

    items = [
        {
            "cod_produto": row[1],
            "nome_produto": row[2],
            "qtd_saldo": row[3],
            "preco": row[4],
            "valor": valor,
            "menor_estoque_d7": lowest,
            "ruptura": flag,
            "ruptura_qtd": short,
            "data_disponibilidade": day_text[day],  # NO_DAY (-1): the trailing None
        }
        for row, valor, lowest, flag, short, day in zip(
            rows,
            np.round(value, 2).tolist(),
            np.round(verdicts.min_window[chosen], 3).tolist(),
            in_rupture.tolist(),
            missing.tolist(),
            available_day.tolist(),
            strict=True,
        )
    ]
    reports: dict[str, dict[str, Any]] = {}
    for num_pedido, start, count, order in zip(
        groups,
        starts.tolist(),
        counts.tolist(),
        zip(
            np.round(total, 2).tolist(),
            np.round(value_in_rupture, 2).tolist(),
            np.round(missing_value, 2).tolist(),
            items_in_rupture.tolist(),
            np.round(percent_in_rupture, 2).tolist(),
            np.round(100.0 - percent_in_rupture, 2).tolist(),
            severities,
            sem_previsao.tolist(),
            latest_day.tolist(),
            strict=True,
        ),
        strict=True,
    ):
        (
            order_total,
            order_in_rupture,
            order_missing,
            ruptures,
            percent,
            available,
            severity,
            no_date,
            latest,
        ) = order
        ships = [row[5] for row in rows[start : start + count] if row[5] is not None]
        first = rows[start]  # by position: lines may be the driver's plain tuples
        reports[num_pedido] = {
            "num_pedido": num_pedido,
            "status": "analisado",
            "mode": mode,
            "cliente": first[7],
            "cnpj": first[6],
            "data_expedicao": min(ships).isoformat() if ships else None,
            "qtd_itens": count,
            "qtd_itens_ruptura": ruptures,
            "qtd_itens_disponiveis": count - ruptures,
            "valor_total": order_total,
            "valor_ruptura": order_in_rupture,
            "valor_faltante": order_missing,
            "percentual_disponibilidade": available,
            "percentual_ruptura": percent,
            "data_disponibilidade_total": None if no_date else day_text[latest],
            "sem_previsao": no_date,
            "coberto_pelo_estoque": ruptures == 0,
            "criticidade": severity,
            "itens": items[start : start + count],
        }
    return reports
