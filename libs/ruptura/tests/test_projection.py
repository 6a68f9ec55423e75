"""Projected stock, checked against hand-computed days."""

from datetime import date, timedelta

import numpy as np
import pytest

from esteira_ruptura.projection import Horizon, Movement, Projection, forward_window_min

START = date(2026, 3, 2)
H10 = Horizon(START, days=10, window=7)


def day(n: int) -> date:
    return START + timedelta(days=n)


def test_stock_plus_cumulative_inflows_minus_outflows() -> None:
    projection = Projection.build(
        H10, {"A": 10}, [Movement("A", day(3), 20)], [Movement("A", day(1), 5)]
    )
    assert projection.of("A").tolist() == [10, 5, 5, 25, 25, 25, 25, 25, 25, 25]


def test_overdue_outflows_count_today_and_overdue_production_does_not() -> None:
    projection = Projection.build(
        H10,
        {"A": 10},
        [Movement("A", day(-1), 50), Movement("A", day(10), 50)],  # overdue, beyond the horizon
        [Movement("A", day(-2), 3)],
    )
    assert projection.of("A").tolist() == [7.0] * 10


def test_a_product_with_nothing_projects_zero() -> None:
    projection = Projection.build(H10, {}, [], [])
    assert projection.of("NADA").tolist() == [0.0] * 10


def test_merging_adds_only_new_products() -> None:
    first = Projection.build(H10, {"A": 1}, [], [])
    second = Projection.build(H10, {"A": 99, "B": 2}, [], [])
    merged = first.merged_with(second)
    assert merged.of("A")[0] == 1 and merged.of("B")[0] == 2 and merged.of("C")[0] == 0


def test_forward_window_min_is_truncated_at_the_end_of_the_horizon() -> None:
    projected = np.array([[5.0, 3, 8, 9, 1, 7]])
    assert forward_window_min(projected, 2).tolist() == [[3, 3, 1, 1, 1, 7]]
    assert forward_window_min(projected, 0).tolist() == projected.tolist()


def test_a_horizon_needs_days() -> None:
    with pytest.raises(ValueError):
        Horizon(START, days=0)
