"""Reading the carteira where it lives: the shipped legacy profile (profiles/legado.yaml) on a
PostgreSQL database of the legacy schema (profiles/legado.sql), through a role that may only
SELECT, gives every order the report the same carteira gets once loaded into Esteira's tables by
CSV (SQLite and PostgreSQL)."""

import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError

import esteira_ruptura
from esteira_core.jobs import RupturaMode
from esteira_ruptura import data
from esteira_ruptura.csv_import import load
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionAnalysis, judge_carteira
from esteira_ruptura.settings import RupturaSettings
from esteira_ruptura.sources import CarteiraSource, configured, esteira_tables, load_queries
from esteira_testing.components import PostgresServer, tables_locked

pytestmark = pytest.mark.integration
PROFILES = Path(esteira_ruptura.__file__).with_name("profiles")
REFERENCE = date(2026, 3, 2)
PASSWORD = "leitura-secreta"


@dataclass
class LegacyCarteira:
    """A carteira as the legacy system keeps it (see profiles/legado.sql)."""

    clientes: dict[str, str] = field(default_factory=dict)
    produtos: dict[str, str] = field(default_factory=dict)
    pedidos: list[dict[str, Any]] = field(default_factory=list)
    itens: list[dict[str, Any]] = field(default_factory=list)
    estoque: dict[str, float] = field(default_factory=dict)
    programacao: list[dict[str, Any]] = field(default_factory=list)
    saidas: list[dict[str, Any]] = field(default_factory=list)


def generate(seed: int, orders: int = 80, products: int = 25) -> LegacyCarteira:
    rng = random.Random(seed)
    legacy = LegacyCarteira()
    for n in range(products):
        legacy.produtos[f"PR-{n:03d}"] = rng.choice(["Açúcar cristal", "Café torrado", "Farinha"])
        if rng.random() < 0.85:  # some products have no stock row at all
            legacy.estoque[f"PR-{n:03d}"] = round(rng.uniform(0, 400), 3)
    for n in range(12):
        legacy.clientes[f"{n:014d}"] = f"Cliente {n} Ltda"
    codes = list(legacy.produtos)
    for n in range(orders):
        numero = f"{50000 + n}"
        cnpj = rng.choice([*legacy.clientes, None])
        entrega = rng.choice([None, REFERENCE + timedelta(days=rng.randint(-10, 40))])
        situacao = rng.choices("AFC", weights=(8, 1, 1))[0]
        legacy.pedidos.append(
            {"numero": numero, "cnpj": cnpj, "entrega": entrega, "situacao": situacao}
        )
        for sequencia in range(1, rng.randint(1, 6) + 1):
            quantidade = round(rng.uniform(1, 120), 3)
            atendida = rng.choice([0.0, 0.0, round(quantidade / 2, 3), quantidade])
            preco = rng.choice([None, 0.0, round(rng.uniform(0.5, 90), 2)])
            legacy.itens.append(
                {
                    "pedido": numero,
                    "sequencia": sequencia,
                    "produto": rng.choice(codes),
                    "quantidade": quantidade,
                    "atendida": atendida,
                    "preco": preco,
                }
            )
    for rows in (legacy.programacao, legacy.saidas):
        for _ in range(products * 3):
            rows.append(
                {
                    "produto": rng.choice(codes),
                    "data": REFERENCE + timedelta(days=rng.randint(-7, 35)),
                    "quantidade": round(rng.uniform(1, 150), 3),
                    "situacao": rng.choices("PC", weights=(9, 1))[0],
                }
            )
    return legacy


def _decimal(value: float) -> str:
    return f"{value}".replace(".", ",")  # the export of a pt-BR spreadsheet


def write_csv(legacy: LegacyCarteira, folder: Path) -> dict[str, Path]:
    """What the team would export from the legacy system for `esteira load-csv`."""
    pedidos = {p["numero"]: p for p in legacy.pedidos}
    rows = ["num_pedido;cod_produto;nome_produto;qtd_saldo;preco;data_expedicao;cnpj;cliente;ativo"]
    for item in legacy.itens:
        pedido = pedidos[item["pedido"]]
        cnpj = pedido["cnpj"]
        entrega = pedido["entrega"]
        rows.append(
            ";".join(
                [
                    str(item["pedido"]),
                    str(item["produto"]),
                    legacy.produtos[str(item["produto"])],
                    _decimal(round(float(item["quantidade"]) - float(item["atendida"]), 3)),
                    "" if item["preco"] is None else _decimal(item["preco"]),
                    "" if entrega is None else entrega.strftime("%d/%m/%Y"),
                    "" if cnpj is None else str(cnpj),
                    "" if cnpj is None else legacy.clientes[str(cnpj)],
                    "sim" if pedido["situacao"] == "A" else "não",
                ]
            )
        )
    files = {
        "carteira": rows,
        "estoque": ["cod_produto;qtd"]
        + [f"{code};{_decimal(qtd)}" for code, qtd in legacy.estoque.items()],
        "producao": ["cod_produto;data;qtd"]
        + [
            f"{r['produto']};{r['data']};{_decimal(r['quantidade'])}"
            for r in legacy.programacao
            if r["situacao"] == "P"
        ],
        "saidas": ["cod_produto;data;qtd"]
        + [
            f"{r['produto']};{r['data']};{_decimal(r['quantidade'])}"
            for r in legacy.saidas
            if r["situacao"] == "P"
        ],
    }
    paths = {}
    for kind, lines in files.items():
        paths[kind] = folder / f"{kind}.csv"
        paths[kind].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def fill_legacy(engine: Engine, legacy: LegacyCarteira) -> None:
    with engine.begin() as connection:
        run = connection.execute
        run(
            text("INSERT INTO clientes (cnpj, razao_social) VALUES (:c, :r)"),
            [{"c": c, "r": r} for c, r in legacy.clientes.items()],
        )
        run(
            text("INSERT INTO produtos (codigo, descricao) VALUES (:c, :d)"),
            [{"c": c, "d": d} for c, d in legacy.produtos.items()],
        )
        run(
            text(
                "INSERT INTO pedidos (numero, cnpj_cliente, data_entrega, situacao)"
                " VALUES (:numero, :cnpj, :entrega, :situacao)"
            ),
            legacy.pedidos,
        )
        run(
            text(
                "INSERT INTO itens_pedido (numero_pedido, sequencia, codigo_produto, quantidade,"
                " quantidade_atendida, preco_unitario)"
                " VALUES (:pedido, :sequencia, :produto, :quantidade, :atendida, :preco)"
            ),
            legacy.itens,
        )
        run(
            text("INSERT INTO estoque_atual (codigo_produto, saldo) VALUES (:c, :q)"),
            [{"c": c, "q": q} for c, q in legacy.estoque.items()],
        )
        for table, rows in (("programacao", legacy.programacao), ("saidas", legacy.saidas)):
            run(
                text(
                    f"INSERT INTO {table} (codigo_produto, data_prevista, quantidade, situacao)"
                    " VALUES (:produto, :data, :quantidade, :situacao)"
                ),
                rows,
            )


@dataclass
class LegacyDatabase:
    owner: Engine  # the legacy system itself
    settings: RupturaSettings  # Esteira's configuration to read it as the read-only role


@pytest.fixture
def legacy_database(postgres_server: PostgresServer) -> Iterator[LegacyDatabase]:
    url = make_url(postgres_server.create_database())
    owner = create_engine(url)
    role = f"leitura_{uuid.uuid4().hex[:8]}"
    with owner.begin() as connection:
        connection.exec_driver_sql((PROFILES / "legado.sql").read_text(encoding="utf-8"))
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        connection.exec_driver_sql(f"GRANT CONNECT ON DATABASE {url.database} TO {role}")
        connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {role}")
        connection.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    settings = RupturaSettings(
        ruptura_source_url=url.set(username=role).render_as_string(hide_password=False),
        ruptura_source_password=PASSWORD,
        ruptura_source_profile=PROFILES / "legado.yaml",
    )
    yield LegacyDatabase(owner, settings)
    owner.dispose()


def _analyse(source: CarteiraSource, orders: list[str], mode: RupturaMode, whole: bool) -> list:
    analysis = SessionAnalysis(source, Horizon(REFERENCE), mode, whole_carteira=whole)
    return [
        r
        for start in range(0, len(orders), 20)
        for r in analysis.analyse(orders[start : start + 20])
    ]


def test_a_session_read_through_the_legacy_profile_equals_the_same_carteira_loaded_by_csv(
    legacy_database: LegacyDatabase, migrated_engine: Engine, tmp_path: Path
) -> None:
    legacy = generate(seed=19)
    fill_legacy(legacy_database.owner, legacy)
    load(migrated_engine, write_csv(legacy, tmp_path))
    tables = esteira_tables(migrated_engine)
    profile = configured(legacy_database.settings, migrated_engine)
    try:
        assert profile.name == "legado.yaml" and profile.engine.url.username.startswith("leitura_")
        with tables.reading() as mine, profile.reading() as theirs:
            orders = data.active_order_numbers(mine)
            assert data.active_order_numbers(theirs) == orders
            assert data.order_summaries(theirs, 30) == data.order_summaries(mine, 30)
        asked = [*orders, "NAO-EXISTE"]
        assert len(orders) > 40
        for mode in RupturaMode:
            for whole in (False, True):
                expected = _analyse(tables, asked, mode, whole)
                assert _analyse(profile, asked, mode, whole) == expected, (mode, whole)
        reports = [r for r in expected if r["status"] == "analisado"]
        assert any(r["qtd_itens_ruptura"] for r in reports)  # the carteira is not trivial
        assert any(r["coberto_pelo_estoque"] for r in reports)
    finally:
        profile.close()


def test_the_source_only_reads_and_follows_the_legacy_version(
    legacy_database: LegacyDatabase, migrated_engine: Engine
) -> None:
    legacy = generate(seed=7, orders=10, products=4)
    fill_legacy(legacy_database.owner, legacy)
    profile = configured(legacy_database.settings, migrated_engine)
    try:
        with profile.engine.connect() as connection, pytest.raises(DBAPIError) as refused:
            connection.execute(text("UPDATE estoque_atual SET saldo = 0"))
        assert "permission denied" in str(refused.value)
        with profile.reading() as reading, pytest.raises(DBAPIError) as refused:
            reading.connection.execute(text("CREATE TEMPORARY TABLE t (x int)"))
        assert "read-only transaction" in str(refused.value)

        horizon, mode = Horizon(REFERENCE), RupturaMode.INDEPENDENT
        version = profile.version()
        assert version != ""
        judged = judge_carteira(profile, horizon, mode)
        assert judged.version == version

        with legacy_database.owner.begin() as connection:  # the legacy system sells everything
            connection.execute(text("UPDATE estoque_atual SET saldo = 0"))
        newer = profile.version()
        assert newer != version
        rejudged = judge_carteira(profile, horizon, mode)
        assert rejudged.version == newer
        assert int(rejudged.verdicts.in_rupture.sum()) > int(judged.verdicts.in_rupture.sum())
    finally:
        profile.close()


def test_a_teams_database_held_by_its_nightly_load_fails_a_read_instead_of_holding_it(
    legacy_database: LegacyDatabase, migrated_engine: Engine
) -> None:
    legacy = generate(seed=3, orders=5, products=3)
    fill_legacy(legacy_database.owner, legacy)
    profile = configured(legacy_database.settings, migrated_engine, lock_timeout_seconds=0.5)
    owner_url = legacy_database.owner.url.render_as_string(hide_password=False)
    try:
        with ThreadPoolExecutor(1) as reader, tables_locked(owner_url, "estoque_atual"):
            # Unbounded, the read would wait for as long as the lock is held: here, for good.
            read = reader.submit(profile.version)
            with pytest.raises(OperationalError, match="lock timeout"):
                read.result(timeout=60)
        assert profile.version() != ""  # the load is over: the source reads again
    finally:
        profile.close()


def test_a_profile_without_a_version_query_has_the_constant_version(tmp_path: Path) -> None:
    queries = load_queries(PROFILES / "legado.yaml").model_dump()
    del queries["versao"]
    unversioned = tmp_path / "sem-versao.yaml"
    unversioned.write_text(yaml.safe_dump(queries), encoding="utf-8")
    source = configured(
        RupturaSettings(
            ruptura_source_url=f"sqlite:///{tmp_path / 'x.db'}", ruptura_source_profile=unversioned
        ),
        create_engine("sqlite://"),
    )
    assert source.version() == ""  # no query at all: a judgement is then reused 30 s at most


def test_a_source_needs_both_its_database_and_its_profile() -> None:
    with pytest.raises(ValidationError, match="go together"):
        RupturaSettings(ruptura_source_url="postgresql+psycopg://leitura@legado/erp")
    with pytest.raises(ValidationError, match="go together"):
        RupturaSettings(ruptura_source_profile=PROFILES / "legado.yaml")
    plain = create_engine("sqlite://")
    assert configured(RupturaSettings(), plain).name == "esteira"
    bad = Path(__file__).with_name("not-there.yaml")
    with pytest.raises(FileNotFoundError):
        load_queries(bad)
