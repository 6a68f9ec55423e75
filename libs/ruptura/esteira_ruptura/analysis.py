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
    validating each would cost more than the analysis itself.
    """
    day_text = [horizon.day(day).isoformat() for day in range(horizon.days)]
    # Only the lines reported are converted: `verdicts` may cover the whole carteira.
    chosen = np.fromiter(
        (index for indexes in groups.values() for index in indexes), dtype=np.int64
    )
    min_window = np.round(verdicts.min_window[chosen], 3).tolist()
    missing = np.round(verdicts.ruptura_qtd[chosen], 3).tolist()
    in_rupture = verdicts.in_rupture[chosen].tolist()
    available_day = verdicts.available_day[chosen].tolist()
    reports: dict[str, dict[str, Any]] = {}
    position = 0
    for num_pedido, indexes in groups.items():
        items: list[dict[str, Any]] = []
        total = value_in_rupture = missing_value = 0.0
        items_in_rupture = 0
        latest_day = 0
        sem_previsao = False
        first_ship: date | None = None
        for index in indexes:
            # Unpacking is the fastest way to read a row's fields, for any named tuple.
            _, cod_produto, nome_produto, qtd_saldo, preco, ship, _, _ = lines[index]
            k = position
            position += 1
            day = available_day[k]
            valor = qtd_saldo * preco
            total += valor
            if in_rupture[k]:
                value_in_rupture += valor
            missing_value += missing[k] * preco
            items_in_rupture += in_rupture[k]
            if day == NO_DAY:
                sem_previsao = True
            elif day > latest_day:
                latest_day = day
            if ship is not None and (first_ship is None or ship < first_ship):
                first_ship = ship
            items.append(
                {
                    "cod_produto": cod_produto,
                    "nome_produto": nome_produto,
                    "qtd_saldo": qtd_saldo,
                    "preco": preco,
                    "valor": round(valor, 2),
                    "menor_estoque_d7": min_window[k],
                    "ruptura": in_rupture[k],
                    "ruptura_qtd": missing[k],
                    "data_disponibilidade": None if day == NO_DAY else day_text[day],
                }
            )
        if total > 0:
            percent_in_rupture = 100.0 * value_in_rupture / total
        else:  # an order worth 0: weigh its lines equally
            percent_in_rupture = 100.0 * items_in_rupture / len(indexes)
        first = lines[indexes[0]]  # by position: lines may be the driver's plain tuples
        reports[num_pedido] = {
            "num_pedido": num_pedido,
            "status": "analisado",
            "mode": mode,
            "cliente": first[7],
            "cnpj": first[6],
            "data_expedicao": None if first_ship is None else first_ship.isoformat(),
            "qtd_itens": len(indexes),
            "qtd_itens_ruptura": items_in_rupture,
            "qtd_itens_disponiveis": len(indexes) - items_in_rupture,
            "valor_total": round(total, 2),
            "valor_ruptura": round(value_in_rupture, 2),
            "valor_faltante": round(missing_value, 2),
            "percentual_disponibilidade": round(100.0 - percent_in_rupture, 2),
            "percentual_ruptura": round(percent_in_rupture, 2),
            "data_disponibilidade_total": None if sem_previsao else day_text[latest_day],
            "sem_previsao": sem_previsao,
            "coberto_pelo_estoque": items_in_rupture == 0,
            "criticidade": criticidade(items_in_rupture, percent_in_rupture).value,
            "itens": items,
        }
    return reports
