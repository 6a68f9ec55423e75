"""Analysing sessions against a real database (SQLite and PostgreSQL)."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import pytest
from sqlalchemy import Engine, event

from esteira_core.jobs import RupturaMode
from esteira_ruptura import data
from esteira_ruptura.demo import CarteiraNotEmptyError, DemoSpec, seed_demo
from esteira_ruptura.models import OrderNotFound, OrderReport
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionAnalysis, SessionCache
from esteira_ruptura.sources import CarteiraSource, esteira_tables

pytestmark = pytest.mark.integration
REFERENCE = date(2026, 3, 2)
SPEC = DemoSpec(orders=90, products=40, seed=3, reference_date=REFERENCE)


@contextmanager
def count_queries(engine: Engine) -> Iterator[list[str]]:
    """The statements run on `engine` meanwhile (but SQLite's BEGIN of a read transaction)."""
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        if statement != "BEGIN":
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def carteira(migrated_engine: Engine) -> CarteiraSource:
    seed_demo(migrated_engine, SPEC)
    return esteira_tables(migrated_engine)


def _orders(source: CarteiraSource) -> list[str]:
    with source.reading() as carteira:
        return data.active_order_numbers(carteira)


def test_batches_use_a_bounded_number_of_queries_and_share_the_projection(carteira) -> None:
    orders = _orders(carteira)
    analysis = SessionAnalysis(carteira, Horizon(REFERENCE), RupturaMode.INDEPENDENT)
    per_batch = []
    for start in range(0, len(orders), 20):
        with count_queries(carteira.engine) as statements:
            results = analysis.analyse(orders[start : start + 20])
        per_batch.append(len(statements))
        assert all(OrderReport.model_validate(r) for r in results)
    assert max(per_batch) <= 4  # the lines, then stock, production, outflows of new products
    assert per_batch[-1] < per_batch[0]  # later batches reuse the projection already loaded


def test_an_order_is_judged_the_same_alone_or_in_a_batch(carteira) -> None:
    orders = _orders(carteira)[:20]
    batch = SessionAnalysis(carteira, Horizon(REFERENCE), RupturaMode.INDEPENDENT).analyse(orders)
    for order, in_batch in zip(orders, batch, strict=True):
        alone = SessionAnalysis(carteira, Horizon(REFERENCE), RupturaMode.INDEPENDENT).analyse(
            [order]
        )
        assert alone == [in_batch]


def test_the_demo_carteira_has_ruptures_and_orders_without_a_date(carteira) -> None:
    results = SessionAnalysis(carteira, Horizon(REFERENCE), RupturaMode.INDEPENDENT).analyse(
        _orders(carteira)
    )
    reports = [OrderReport.model_validate(r) for r in results if r["status"] == "analisado"]
    assert len(reports) == SPEC.orders
    assert any(r.qtd_itens_ruptura for r in reports)
    assert any(r.coberto_pelo_estoque for r in reports)
    assert any(r.sem_previsao for r in reports)
    assert len({r.criticidade for r in reports}) >= 3


def test_unknown_orders_are_reported_in_place(carteira) -> None:
    known = _orders(carteira)[0]
    results = SessionAnalysis(carteira, Horizon(REFERENCE), RupturaMode.INDEPENDENT).analyse(
        ["NOPE", known]
    )
    assert OrderNotFound.model_validate(results[0]).num_pedido == "NOPE"
    assert OrderReport.model_validate(results[1]).num_pedido == known


def test_both_ways_of_loading_give_the_same_answer(carteira) -> None:
    orders = _orders(carteira)
    whole = SessionAnalysis(
        carteira, Horizon(REFERENCE), RupturaMode.INDEPENDENT, whole_carteira=True
    )
    first = whole.analyse(orders[:20])
    with count_queries(carteira.engine) as statements:
        rest = whole.analyse(orders[20:])
    assert statements == []
    per_batch = SessionAnalysis(carteira, Horizon(REFERENCE), RupturaMode.INDEPENDENT)
    assert first + rest == per_batch.analyse(orders[:20]) + per_batch.analyse(orders[20:])


def test_allocated_mode_loads_the_carteira_once_and_never_covers_more(carteira) -> None:
    orders = _orders(carteira)
    allocated = SessionAnalysis(carteira, Horizon(REFERENCE), RupturaMode.ALLOCATED)
    first = allocated.analyse(orders[:20])
    with count_queries(carteira.engine) as statements:
        rest = allocated.analyse(orders[20:])
    assert statements == []
    independent = SessionAnalysis(carteira, Horizon(REFERENCE), RupturaMode.INDEPENDENT).analyse(
        orders
    )
    covered_allocated = sum(r["coberto_pelo_estoque"] for r in first + rest)
    covered_independent = sum(r["coberto_pelo_estoque"] for r in independent)
    assert covered_allocated < covered_independent


def test_the_cache_keeps_one_analysis_per_session(carteira) -> None:
    cache = SessionCache(capacity=2)

    def get(session_id: str):
        return cache.get(
            session_id, carteira, Horizon(REFERENCE), RupturaMode.INDEPENDENT, whole_carteira=False
        )

    first = get("s1")
    assert get("s1") is first
    get("s2")
    get("s3")
    assert get("s1") is not first  # evicted


def test_a_busy_process_judges_the_whole_carteira_for_its_small_sessions(carteira) -> None:
    cache = SessionCache(busy_sessions=3)

    def get(session_id: str) -> SessionAnalysis:
        return cache.get(
            session_id, carteira, Horizon(REFERENCE), RupturaMode.INDEPENDENT, whole_carteira=False
        )

    assert [get(f"s{i}").whole_carteira for i in range(4)] == [False, False, False, True]
    cache.busy_seconds = 0  # the sessions started long ago: the process is no longer busy
    assert not get("s5").whole_carteira


def test_seeding_is_deterministic_and_refuses_to_overwrite(migrated_engine) -> None:
    counts = seed_demo(migrated_engine, SPEC)
    with pytest.raises(CarteiraNotEmptyError):
        seed_demo(migrated_engine, SPEC)
    assert seed_demo(migrated_engine, SPEC, replace=True) == counts
    with esteira_tables(migrated_engine).reading() as reading:
        lines = data.load_lines(reading, None)
    assert len(lines) == counts["carteira_itens"]
