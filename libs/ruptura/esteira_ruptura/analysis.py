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
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from esteira_ruptura.models import Criticidade, OrderLine, OrderNotFound
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


_NOT_FOUND = OrderNotFound(num_pedido="-").model_dump()

# One item's and one order's JSON, their fields in ItemReport's and OrderReport's order (each
# %s is a value's JSON; an order's last is its items').
_ITEM = (
    b'{"cod_produto":%s,"nome_produto":%s,"qtd_saldo":%s,"preco":%s,"valor":%s,'
    b'"menor_estoque_d7":%s,"ruptura":%s,"ruptura_qtd":%s,"data_disponibilidade":%s}'
)
_ORDER = (
    b'{"num_pedido":%s,"status":"analisado","mode":%s,"cliente":%s,"cnpj":%s,'
    b'"data_expedicao":%s,"qtd_itens":%s,"qtd_itens_ruptura":%s,"qtd_itens_disponiveis":%s,'
    b'"valor_total":%s,"valor_ruptura":%s,"valor_faltante":%s,"percentual_disponibilidade":%s,'
    b'"percentual_ruptura":%s,"data_disponibilidade_total":%s,"sem_previsao":%s,'
    b'"coberto_pelo_estoque":%s,"criticidade":%s,"itens":[%s]}'
)


def _texts(values: Sequence[Any]) -> list[bytes]:
    """Each value's JSON as orjson writes it, each distinct value encoded once."""
    text = {value: orjson.dumps(value) for value in set(values)}
    return list(map(text.__getitem__, values))


def _number_texts(*columns: Sequence[Any]) -> list[list[bytes]]:
    """Each number's (or bool's) JSON as orjson writes it, column by column, in one call (such
    a JSON has no comma)."""
    texts = orjson.dumps(list(chain(*columns)))[1:-1].split(b",")
    size = len(columns[0])
    return [texts[start : start + size] for start in range(0, len(texts), size)]


def rendered_orders(
    groups: dict[str, list[int]],
    lines: Sequence[OrderLine],
    verdicts: LineVerdicts,
    horizon: Horizon,
    mode: str,
) -> dict[str, bytes]:
    """One report JSON per order of `groups` (order number -> indexes of its judged lines), as
    clients receive it; `OrderReport` is its schema.

    Neither models nor dicts: a 20,000-order session has some 160,000 items, and building an
    object for each only to encode it would cost more than the analysis itself. Every sum and
    count per order is computed at once over all the orders' lines (each order's lines are one
    segment of them), every number is encoded by orjson in one call, and Python only pastes
    each item's and each order's JSON together from the values' JSON.
    """
    if not groups:
        return {}
    day_json = [orjson.dumps(horizon.day(day)) for day in range(horizon.days)] + [b"null"]
    # Only the lines reported are converted: `verdicts` may cover the whole carteira.
    chosen_list = [index for indexes in groups.values() for index in indexes]
    chosen = np.array(chosen_list, dtype=np.int64)
    # The chosen lines' columns, by position: lines may be the driver's plain tuples. (Not
    # zip(*rows): its iterator per row would have the garbage collector walk the heap.)
    rows = [lines[index] for index in chosen_list]
    codes, names, quantities, prices, ships = (list(map(itemgetter(i), rows)) for i in range(1, 6))
    counts = np.fromiter((len(indexes) for indexes in groups.values()), np.int64, len(groups))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))

    quantity = np.array(quantities, np.float64)
    price = np.array(prices, np.float64)
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
    total_day = np.where(sem_previsao, NO_DAY, np.maximum.reduceat(available_day, starts))
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
        _ITEM % fields
        for fields in zip(
            _texts(codes),
            _texts(names),
            *_number_texts(
                quantities,
                prices,
                np.round(value, 2).tolist(),
                np.round(verdicts.min_window[chosen], 3).tolist(),
                in_rupture.tolist(),
                missing.tolist(),
            ),
            map(day_json.__getitem__, available_day.tolist()),  # NO_DAY (-1): the trailing null
            strict=True,
        )
    ]
    firsts = [rows[start] for start in starts.tolist()]
    ends = (starts + counts).tolist()
    # An order's ship date: its lines' earliest (a date is never false, None always is).
    shipping = [
        min(filter(None, ships[start:end]), default=None)
        for start, end in zip(starts.tolist(), ends, strict=True)
    ]
    orders = zip(
        _texts(list(groups)),
        repeat(orjson.dumps(mode)),
        _texts([first[7] for first in firsts]),  # cliente
        _texts([first[6] for first in firsts]),  # cnpj
        _texts(shipping),
        *_number_texts(
            counts.tolist(),
            items_in_rupture.tolist(),
            (counts - items_in_rupture).tolist(),
            np.round(total, 2).tolist(),
            np.round(value_in_rupture, 2).tolist(),
            np.round(missing_value, 2).tolist(),
            np.round(100.0 - percent_in_rupture, 2).tolist(),
            np.round(percent_in_rupture, 2).tolist(),
        ),
        map(day_json.__getitem__, total_day.tolist()),
        *_number_texts(sem_previsao.tolist(), (items_in_rupture == 0).tolist()),
        _texts(severities),
        map(b",".join, map(items.__getitem__, map(slice, starts.tolist(), ends))),
        strict=False,  # repeat() never ends
    )
    return {number: _ORDER % fields for number, fields in zip(groups, orders, strict=True)}


def not_found(num_pedido: str) -> bytes:
    """The JSON of an order the carteira does not have (an OrderNotFound)."""
    return orjson.dumps({**_NOT_FOUND, "num_pedido": num_pedido})
