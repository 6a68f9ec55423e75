"""Projected stock per product and day (ARCHITECTURE "Ruptura semantics").

P[d] = stock + Σ_{t≤d} (in[t] − out[t]) for each day d of the horizon (day 0 is the reference
date). Pending outflows dated before the reference date still have to leave, so they count on day
0; production dated before it has not arrived and is not counted (an overdue production order is
no promise of stock).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Horizon:
    """The days analysed: `days` days from `start`, with a look-ahead `window` (the seeds' D7)."""

    start: date
    days: int = 28
    window: int = 7

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError("the horizon needs at least one day")
        if self.window < 0:
            raise ValueError("the window cannot be negative")

    def day(self, index: int) -> date:
        return self.start + timedelta(days=index)

    def index(self, when: date) -> int:
        return (when - self.start).days


@dataclass(frozen=True)
class Movement:
    cod_produto: str
    data: date
    qtd: float


class Projection:
    """P for a set of products: one row of `horizon.days` values per product code."""

    def __init__(self, horizon: Horizon, codes: list[str], projected: FloatArray) -> None:
        self.horizon = horizon
        self.row = {code: index for index, code in enumerate(codes)}
        # One extra all-zero row stands for products with no stock and no movements.
        self.projected = np.vstack([projected, np.zeros((1, horizon.days))])
        # Per product: min(P[0..W]), and for each day d min(P[d..min(d+W, H-1)]).
        self.head_min: FloatArray = self.projected[:, : horizon.window + 1].min(axis=1)
        self.ahead_min: FloatArray = forward_window_min(self.projected, horizon.window)

    @classmethod
    def build(
        cls,
        horizon: Horizon,
        stock: Mapping[str, float],
        inflows: Iterable[Movement],
        outflows: Iterable[Movement],
    ) -> Projection:
        inflow_list, outflow_list = list(inflows), list(outflows)
        codes = sorted(
            set(stock)
            | {m.cod_produto for m in inflow_list}
            | {m.cod_produto for m in outflow_list}
        )
        row = {code: index for index, code in enumerate(codes)}
        delta = np.zeros((len(codes), horizon.days))
        for movements, sign, overdue_counts in (
            (inflow_list, 1.0, False),
            (outflow_list, -1.0, True),
        ):
            for movement in movements:
                day = horizon.index(movement.data)
                if day >= horizon.days or (day < 0 and not overdue_counts):
                    continue
                delta[row[movement.cod_produto], max(day, 0)] += sign * movement.qtd
        initial = np.array([stock.get(code, 0.0) for code in codes], dtype=np.float64)
        projected = initial[:, None] + np.cumsum(delta, axis=1)
        return cls(horizon, codes, projected)

    @property
    def codes(self) -> list[str]:
        return list(self.row)

    def merged_with(self, other: Projection) -> Projection:
        """This projection plus the products only `other` has (same horizon)."""
        new = [code for code in other.row if code not in self.row]
        if not new:
            return self
        extra = other.projected[other.rows_for(new)]
        return Projection(self.horizon, self.codes + new, np.vstack([self.projected[:-1], extra]))

    def rows_for(self, codes: Iterable[str]) -> IntArray:
        missing = len(self.row)
        return np.fromiter((self.row.get(code, missing) for code in codes), dtype=np.int64)

    def of(self, code: str) -> FloatArray:
        row: FloatArray = self.projected[self.row.get(code, len(self.row))]
        return row


def forward_window_min(projected: FloatArray, window: int) -> FloatArray:
    """M[..., d] = min(P[..., d : min(d + window, H − 1) + 1]) along the last axis."""
    days = projected.shape[-1]
    padding = [(0, 0)] * (projected.ndim - 1) + [(0, window)]
    padded = np.pad(projected, padding, constant_values=np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, window + 1, axis=-1)
    result: FloatArray = windows[..., :days, :].min(axis=-1)
    return result
