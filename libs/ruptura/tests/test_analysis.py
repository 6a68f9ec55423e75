"""The ruptura rules against hand-computed cases."""

from datetime import date, timedelta

import numpy as np
import orjson
import pytest

from esteira_ruptura.analysis import (
    NO_DAY,
    allocate,
    criticidade,
    group_by_order,
    judge,
    judge_independent,
    rendered_orders,
)
from esteira_ruptura.models import Criticidade, ItemReport, OrderLine, OrderReport
from esteira_ruptura.projection import Horizon, Movement, Projection

START = date(2026, 3, 2)
H28 = Horizon(START, days=28, window=7)


def day(n: int) -> date:
    return START + timedelta(days=n)


def line(
    pedido: str, produto: str, qtd: float, preco: float = 1.0, ship: int | None = 0
) -> OrderLine:
    return OrderLine(
        num_pedido=pedido,
        cod_produto=produto,
        nome_produto=produto,
        qtd_saldo=qtd,
        preco=preco,
        data_expedicao=None if ship is None else day(ship),
        cnpj="",
        cliente="",
    )


def verdicts_for(quantities: list[float], projected: list[float], window: int = 7):
    rows = np.array([projected] * len(quantities), dtype=float)
    return judge(np.array(quantities, dtype=float), rows, window)


# Stock 10 for days 0-9, then production of 20 lands on day 10: P = 10 x10, 30 x18.
STEP = [10.0] * 10 + [30.0] * 18


def test_d7_rule_quantity_and_availability_day() -> None:
    v = verdicts_for([15, 10, 40], STEP)
    assert v.in_rupture.tolist() == [True, False, True]
    assert v.min_window.tolist() == [10, 10, 10]
    assert v.ruptura_qtd.tolist() == [5, 0, 30]
    assert v.available_day.tolist() == [10, 0, NO_DAY]  # 40 never: sem previsão


def test_negative_projection_counts_as_zero_for_the_missing_quantity() -> None:
    v = verdicts_for([3], [-5.0] * 28)
    assert v.in_rupture.tolist() == [True] and v.ruptura_qtd.tolist() == [3]


def test_production_inside_d7_is_not_added_on_top_of_the_d7_minimum() -> None:
    # stock 10, +10 on day 2, -15 on day 5: P = 10 10 20 20 20 5 5 ... ; min(P[0..7]) = 5.
    # The seed added the production (10) to that minimum and called 8 units available.
    projection = Projection.build(
        H28, {"A": 10}, [Movement("A", day(2), 10)], [Movement("A", day(5), 15)]
    )
    v = judge_independent([line("1", "A", 8)], projection)
    assert v.in_rupture.tolist() == [True]
    assert v.ruptura_qtd.tolist() == [3]
    assert v.available_day.tolist() == [NO_DAY]


def test_availability_needs_the_whole_window_to_hold_the_quantity() -> None:
    # Stock arrives on day 3 but a planned outflow takes it back on day 6, for good on day 20.
    projected = [0, 0, 0, 10, 10, 10, 2, 2, 2, 2, 2, 2, 2, 2, 2, 10, 10, 10, 10, 10] + [10] * 8
    v = verdicts_for([5], projected)
    assert v.available_day.tolist() == [15]


def test_a_product_without_stock_or_movements_is_in_full_rupture() -> None:
    projection = Projection.build(H28, {}, [], [])
    v = judge_independent([line("1", "GHOST", 4)], projection)
    assert (v.in_rupture[0], v.ruptura_qtd[0], v.available_day[0]) == (True, 4, NO_DAY)


@pytest.mark.parametrize(
    ("items", "percent", "expected"),
    [
        (4, 10.1, Criticidade.CRITICA),
        (4, 10.0, Criticidade.ALTA),
        (0, 10.5, Criticidade.ALTA),
        (3, 10.0, Criticidade.MEDIA),
        (2, 0.0, Criticidade.MEDIA),
        (1, 5.1, Criticidade.MEDIA),
        (1, 5.0, Criticidade.BAIXA),
        (0, 0.0, Criticidade.BAIXA),
    ],
)
def test_criticidade_thresholds(items: int, percent: float, expected: Criticidade) -> None:
    assert criticidade(items, percent) is expected


def test_orders_compete_in_priority_order_when_allocated() -> None:
    # Stock 10 flat; production +10 on day 5. B and C ship on day 1 (B first by number), A day 2.
    projection = Projection.build(H28, {"P": 10}, [Movement("P", day(5), 10)], [])
    lines = [
        line("100001", "P", 6, ship=2),
        line("100002", "P", 6, ship=1),
        line("100003", "P", 3, ship=1),
    ]
    independent = judge_independent(lines, projection)
    assert independent.in_rupture.tolist() == [False, False, False]

    allocated = allocate(lines, projection)
    # B takes 6 (4 left), C takes 3 (1 left), A sees 1 until day 5, when 11 are there.
    assert allocated.in_rupture.tolist() == [True, False, False]
    assert allocated.ruptura_qtd.tolist() == [5, 0, 0]
    assert allocated.available_day.tolist() == [5, 0, 0]


def test_an_undated_line_comes_last_and_a_reservation_holds_from_its_day_on() -> None:
    projection = Projection.build(H28, {"P": 4}, [Movement("P", day(3), 6)], [])
    lines = [line("1", "P", 4, ship=None), line("2", "P", 8, ship=5)]
    allocated = allocate(lines, projection)
    # "2" comes first: 8 is there from day 3 on, reserved from day 3: 4 left until day 3, 2 after.
    assert allocated.available_day.tolist() == [NO_DAY, 3]
    assert allocated.ruptura_qtd.tolist() == [2, 4]


def _report(lines, verdicts, mode: str = "independent") -> dict[str, OrderReport]:
    """Reports validated against their published schema."""
    reports = rendered_orders(group_by_order(lines), lines, verdicts, H28, mode)
    return {number: OrderReport.model_validate_json(body) for number, body in reports.items()}


def _values(report: OrderReport) -> tuple[float, ...]:
    return (
        report.valor_total,
        report.valor_ruptura,
        report.valor_faltante,
        report.percentual_disponibilidade,
        report.percentual_ruptura,
    )


def test_an_order_report_weighs_by_value_and_dates_by_its_latest_item() -> None:
    projection = Projection.build(H28, {"A": 5, "B": 100}, [Movement("A", day(9), 100)], [])
    lines = [line("7", "A", 10, preco=2), line("7", "B", 1, preco=80)]
    verdicts = judge_independent(lines, projection)
    report = _report(lines, verdicts)["7"]
    # The A line (worth 20) is in rupture, 5 of its 10 missing: 20 in rupture, 10 missing.
    assert _values(report) == (100, 20, 10, 80, 20)
    assert (report.qtd_itens_ruptura, report.qtd_itens_disponiveis) == (1, 1)
    assert report.criticidade is Criticidade.ALTA
    assert report.data_disponibilidade_total == day(9)
    assert report.coberto_pelo_estoque is False and report.sem_previsao is False


def test_an_order_with_an_item_never_available_has_no_total_date() -> None:
    projection = Projection.build(H28, {"A": 5}, [], [])
    lines = [line("8", "A", 1), line("8", "A", 50)]
    report = _report(lines, judge_independent(lines, projection))["8"]
    assert report.data_disponibilidade_total is None and report.sem_previsao is True


def test_an_order_without_rupture_is_available_on_the_reference_date() -> None:
    projection = Projection.build(H28, {"A": 50}, [], [])
    lines = [line("9", "A", 5, preco=0)]
    report = _report(lines, judge_independent(lines, projection))["9"]
    assert report.data_disponibilidade_total == START
    assert report.criticidade is Criticidade.BAIXA and report.percentual_disponibilidade == 100


def test_the_issue_example_one_line_of_83_against_a_stock_of_5() -> None:
    projection = Projection.build(H28, {"A": 5}, [], [])
    lines = [line("1", "A", 83, preco=1)]
    report = _report(lines, judge_independent(lines, projection))["1"]
    assert _values(report) == (83, 83, 78, 0, 100)
    assert report.itens[0].ruptura_qtd == 78
    assert report.criticidade is Criticidade.ALTA


def test_independent_mode_gives_the_original_systems_numbers() -> None:
    """A hand-made carteira, computed by hand with the original system's rule (for each line in
    rupture, `valor_com_ruptura += valor_item`; percentual_disponibilidade = 100 −
    valor_com_ruptura / valor_total × 100; criticidade from that percentage), which Esteira
    reports as `valor_ruptura`.

    Stock: A 5, B 100, C 0 (+50 produced on day 3), D 10. min(P[0..7]): A 5, B 100, C 0, D 10.

    Per order: lines (product qtd×price), lines in rupture (missing qtd); then value in total /
    in rupture / missing, % available, criticidade.

    1: A 83×1                 A (78)           83 /  83 / 78    0 %  ALTA (100 % > 10)
    2: B 10×9, A 6×1, C 2×2   A (1), C (2)    100 /  10 /  5   90 %  MEDIA (2 items)
    3: B 92×1, A 8×1          A (3)           100 /   8 /  3   92 %  MEDIA (8 % > 5)
    4: A 83×0, D 1×0          A (78)            0 /   0 /  0   50 %  ALTA (worth 0: 1 of 2 lines)
    5: C 1×5 (4 lines), B 1×80  the 4 C (1)   100 /  20 / 20   80 %  CRITICA (4 items, 20 %)
    6: D 10×3                 none             30 /   0 /  0  100 %  BAIXA

    Counting the missing value instead (Esteira's old rule) gave order 1 6.02 % available and
    order 3 97 % and BAIXA.
    """
    projection = Projection.build(
        H28, {"A": 5, "B": 100, "C": 0, "D": 10}, [Movement("C", day(3), 50)], []
    )
    lines = [
        line("1", "A", 83, preco=1),
        line("2", "B", 10, preco=9),
        line("2", "A", 6, preco=1),
        line("2", "C", 2, preco=2),
        line("3", "B", 92, preco=1),
        line("3", "A", 8, preco=1),
        line("4", "A", 83, preco=0),
        line("4", "D", 1, preco=0),
        *[line("5", "C", 1, preco=5) for _ in range(4)],
        line("5", "B", 1, preco=80),
        line("6", "D", 10, preco=3),
    ]
    reports = _report(lines, judge_independent(lines, projection))
    assert {number: _values(report) for number, report in reports.items()} == {
        "1": (83, 83, 78, 0, 100),
        "2": (100, 10, 5, 90, 10),
        "3": (100, 8, 3, 92, 8),
        "4": (0, 0, 0, 50, 50),
        "5": (100, 20, 20, 80, 20),
        "6": (30, 0, 0, 100, 0),
    }
    assert {number: report.criticidade.value for number, report in reports.items()} == {
        "1": "ALTA",
        "2": "MEDIA",
        "3": "MEDIA",
        "4": "ALTA",
        "5": "CRITICA",
        "6": "BAIXA",
    }
    assert [reports[n].qtd_itens_ruptura for n in "123456"] == [1, 2, 1, 1, 4, 0]


def test_allocated_mode_values_rupture_the_same_way() -> None:
    """Stock P 10, Q 100. Order X ships first and takes 6 of P; order Y's P line (6 × 2 = 12)
    then sees 4: in rupture, 2 missing (4 of value). Y is worth 12 + 88 = 100: 12 in rupture, 88 %
    available, ALTA (12 % > 10); the missing value alone would have said 96 % and BAIXA."""
    projection = Projection.build(H28, {"P": 10, "Q": 100}, [], [])
    lines = [
        line("X", "P", 6, preco=1, ship=1),
        line("Y", "P", 6, preco=2, ship=2),
        line("Y", "Q", 88, preco=1, ship=2),
    ]
    reports = _report(lines, allocate(lines, projection), mode="allocated")
    assert _values(reports["X"]) == (6, 0, 0, 100, 0)
    assert _values(reports["Y"]) == (100, 12, 4, 88, 12)
    assert reports["Y"].criticidade is Criticidade.ALTA
    assert reports["Y"].coberto_pelo_estoque is False and reports["X"].coberto_pelo_estoque


def test_a_rendered_report_is_the_json_orjson_writes_whatever_its_values() -> None:
    odd = 'Água, "fina"\\ 1,5 L'
    projection = Projection.build(H28, {"A": 5}, [], [])
    lines = [
        OrderLine("X", "A", odd, 1e17, 1e-7, None, 'cnpj "1"', "Zé, Ltda"),
        OrderLine("X", "B", "b", 2, 0, day(3), "", ""),
        OrderLine("X", "A", odd, 3.0, 2.5, day(1), "", ""),
    ]
    (rendered,) = rendered_orders(
        group_by_order(lines), lines, judge_independent(lines, projection), H28, "independent"
    ).values()
    assert rendered == orjson.dumps(orjson.loads(rendered))  # orjson's numbers, escapes, nulls
    report = orjson.loads(rendered)
    assert list(report) == list(OrderReport.model_fields)
    assert [list(item) for item in report["itens"]] == [list(ItemReport.model_fields)] * 3
    assert (report["cliente"], report["cnpj"], report["data_expedicao"]) == (
        "Zé, Ltda",
        'cnpj "1"',
        day(1).isoformat(),
    )
    assert [(i["nome_produto"], i["qtd_saldo"], i["preco"]) for i in report["itens"]] == [
        (odd, 1e17, 1e-7),
        ("b", 2, 0),
        (odd, 3.0, 2.5),
    ]
    assert [(i["ruptura"], i["data_disponibilidade"]) for i in report["itens"]] == [
        (True, None),
        (True, None),
        (False, START.isoformat()),
    ]
    assert (report["valor_total"], report["qtd_itens_ruptura"]) == (10000000007.5, 2)
