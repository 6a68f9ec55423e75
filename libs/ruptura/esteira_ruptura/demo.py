"""A realistic, deterministic demo carteira: open order lines, stock, production schedule and
planned outflows, generated from a seed so every run (and every test) sees the same data.

Stock is drawn low against demand on purpose, so some lines are in rupture, some become available
when production lands, and a few products never recover within the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
from sqlalchemy import Engine, delete, func, insert, select

from esteira_ruptura.data import bump_carteira_version
from esteira_ruptura.tables import carteira_itens, estoque, programacao_producao, saidas_previstas

CARTEIRA_TABLES = (carteira_itens, estoque, programacao_producao, saidas_previstas)
_CLIENTES = (
    "Atacadão Central",
    "Mercado São Jorge",
    "Distribuidora Paraná",
    "Rede Bom Preço",
    "Supermercado Ipê",
    "Comercial Aurora",
    "Empório Serra Azul",
    "Casa do Norte",
)
_FAMILIAS = (
    "Parafuso",
    "Rolamento",
    "Correia",
    "Filtro",
    "Válvula",
    "Mangueira",
    "Motor",
    "Sensor",
)


class CarteiraNotEmptyError(RuntimeError):
    """Seeding would mix demo data into an existing carteira."""


@dataclass(frozen=True)
class DemoSpec:
    orders: int = 2000
    products: int = 400
    seed: int = 7
    horizon_days: int = 28
    max_lines_per_order: int = 15
    reference_date: date = field(default_factory=date.today)


def _rows(spec: DemoSpec) -> dict[str, list[dict[str, object]]]:
    rng = np.random.default_rng(spec.seed)
    codes = [f"P{index:05d}" for index in range(1, spec.products + 1)]
    names = [f"{_FAMILIAS[i % len(_FAMILIAS)]} modelo {i:05d}" for i in range(1, spec.products + 1)]
    prices = np.round(rng.lognormal(3.0, 0.8, spec.products), 2)
    popularity = rng.pareto(1.5, spec.products) + 1
    popularity /= popularity.sum()

    lines: list[dict[str, object]] = []
    demand = np.zeros(spec.products)
    for order in range(1, spec.orders + 1):
        num_pedido = f"{100000 + order}"
        cliente = int(rng.integers(len(_CLIENTES)))
        cnpj = f"{11222333 + cliente:08d}0001{cliente:02d}"
        ship = spec.reference_date + timedelta(days=int(rng.integers(0, spec.horizon_days)))
        count = int(rng.integers(1, spec.max_lines_per_order + 1))
        for product in rng.choice(
            spec.products, size=min(count, spec.products), replace=False, p=popularity
        ):
            qtd = float(rng.integers(1, 60))
            demand[product] += qtd
            lines.append(
                {
                    "num_pedido": num_pedido,
                    "cod_produto": codes[product],
                    "nome_produto": names[product],
                    "qtd_saldo": qtd,
                    "preco": float(prices[product]),
                    "data_expedicao": ship,
                    "cnpj": cnpj,
                    "cliente": _CLIENTES[cliente],
                    "ativo": True,
                }
            )

    stock_rows, production_rows, outflow_rows = [], [], []
    for product, code in enumerate(codes):
        expected = demand[product] / max(1, spec.orders / 50)  # demand of a typical order set
        stock_rows.append(
            {"cod_produto": code, "qtd": float(np.round(expected * rng.uniform(0, 3)))}
        )
        never_recovers = rng.random() < 0.05
        if not never_recovers:
            for _ in range(int(rng.integers(0, 4))):
                day = spec.reference_date + timedelta(days=int(rng.integers(1, spec.horizon_days)))
                qtd = float(np.round(expected * rng.uniform(0.5, 4)) + 1)
                production_rows.append({"cod_produto": code, "data": day, "qtd": qtd})
        for _ in range(int(rng.integers(0, 3))):
            day = spec.reference_date + timedelta(days=int(rng.integers(0, spec.horizon_days)))
            qtd = float(np.round(expected * rng.uniform(0.1, 1)) + 1)
            outflow_rows.append({"cod_produto": code, "data": day, "qtd": qtd})
    return {
        "carteira_itens": lines,
        "estoque": stock_rows,
        "programacao_producao": production_rows,
        "saidas_previstas": outflow_rows,
    }


def seed_demo(
    engine: Engine, spec: DemoSpec, *, replace: bool = False, if_empty: bool = False
) -> dict[str, int]:
    """Writes the demo carteira in one transaction; returns the rows written per table."""
    with engine.begin() as connection:
        existing = connection.execute(select(func.count()).select_from(carteira_itens)).scalar_one()
        if existing and if_empty:
            return {"carteira_itens (kept)": existing}
        if existing and not replace:
            raise CarteiraNotEmptyError(
                f"the carteira already has {existing} lines; pass --replace to overwrite it"
            )
        for table in CARTEIRA_TABLES:
            connection.execute(delete(table))
        rows = _rows(spec)
        for table in CARTEIRA_TABLES:
            if rows[table.name]:
                connection.execute(insert(table), rows[table.name])
        bump_carteira_version(connection)
    return {name: len(table_rows) for name, table_rows in rows.items()}
