"""Ruptura end to end: the gateway, a real ruptura worker process and a real redis-server, on a
seeded SQLite and a seeded PostgreSQL."""

import json
import time
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine

from esteira_api.main import create_app
from esteira_api.settings import ApiSettings
from esteira_cli.processes import free_port
from esteira_core.jobs import RupturaMode
from esteira_ruptura import data
from esteira_ruptura.demo import DemoSpec, seed_demo
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionAnalysis
from esteira_ruptura.sources import esteira_tables

pytestmark = pytest.mark.integration
REFERENCE = date(2026, 3, 2)


def _start_worker(esteira_processes, engine: Engine, redis_url: str, **env: str) -> str:
    """A ruptura worker process on `engine`'s database (and `env`); returns its URL, which the
    gateway then uses too."""
    database_url = engine.url.render_as_string(hide_password=False)
    port = free_port()
    esteira_processes(
        "ruptura-worker",
        ["worker", "ruptura"],
        {
            "ESTEIRA_REDIS_URL": redis_url,
            "ESTEIRA_DATABASE_URL": database_url,
            "ESTEIRA_METRICS_PORT": str(port),
            **env,
        },
        port=port,
    )
    return database_url


@pytest.fixture
def stack(migrated_engine: Engine, redis_url: str, esteira_processes):
    """A seeded database, one ruptura worker and a gateway client."""
    seed_demo(migrated_engine, DemoSpec(orders=70, products=30, seed=11, reference_date=REFERENCE))
    database_url = _start_worker(esteira_processes, migrated_engine, redis_url)
    settings = ApiSettings(
        redis_url=redis_url, database_url=database_url, ruptura_max_orders=100, auth_disabled=True
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, migrated_engine


def _orders(engine: Engine) -> list[str]:
    with esteira_tables(engine).reading() as carteira:
        return data.active_order_numbers(carteira)


def _follow(client: TestClient, results_url: str, timeout: float = 60) -> list[dict]:
    """Polls by offset, as a browser would, until the session is done."""
    collected: list[dict] = []
    offset = 0
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(results_url.split("?")[0], params={"offset": offset}).json()
        assert body["offset"] == offset
        collected += body["results"]
        offset = body["next_offset"]
        assert offset == len(collected)
        if body["done"]:
            return collected
        assert time.monotonic() < deadline, "the session did not finish"
        time.sleep(0.1)


def test_a_session_returns_every_order_once_with_the_engines_verdict(stack) -> None:
    client, engine = stack
    orders = _orders(engine)[:45]
    response = client.post(
        "/api/v1/ruptura/sessions",
        json={"pedidos": orders + orders[:5], "reference_date": str(REFERENCE)},
    )
    assert response.status_code == 202
    started = response.json()
    assert (started["total"], started["batches"]) == (45, 3)

    results = _follow(client, started["results_url"])
    assert sorted(r["num_pedido"] for r in results) == sorted(orders)
    expected = SessionAnalysis(
        esteira_tables(engine), Horizon(REFERENCE), RupturaMode.INDEPENDENT
    ).analyse(orders)
    by_order = {r["num_pedido"]: r for r in results}
    for report in expected:
        assert by_order[report["num_pedido"]] == report

    status = client.get(started["status_url"]).json()
    assert (status["status"], status["processed"], status["percent"]) == ("done", 45, 100.0)
    assert status["workers_online"] == 1

    with client.stream("GET", started["events_url"]) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in stream.iter_lines() if line.startswith("data:")]
    assert lines == ['data: {"processed": 45, "total": 45, "done": true}']


def test_events_follow_a_running_session_batch_by_batch(stack) -> None:
    client, engine = stack
    started = client.post(
        "/api/v1/ruptura/sessions", json={"all": True, "reference_date": str(REFERENCE)}
    ).json()
    assert started["total"] == len(_orders(engine)) == 70
    with client.stream("GET", started["events_url"]) as stream:
        events = [json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:")]
    assert events[-1]["done"] is True and events[-1]["processed"] == 70
    assert [e["processed"] for e in events] == sorted(e["processed"] for e in events)


def test_a_long_poll_answers_with_each_batch_never_with_an_empty_page(stack) -> None:
    client, engine = stack
    started = client.post(
        "/api/v1/ruptura/sessions", json={"all": True, "reference_date": str(REFERENCE)}
    ).json()
    results_url = started["results_url"].split("?")[0]
    offset, answers = 0, 0
    while True:
        answer = client.get(results_url, params={"offset": offset, "wait": 20})
        body = answer.json()
        answers += 1
        # Held until there is something to say: new results, or the end.
        assert body["results"] or body["done"]
        offset = body["next_offset"]
        if body["done"]:
            break
    assert offset == 70
    assert answers <= started["batches"] + 1
    # Finished: a long poll at the end answers at once.
    began = time.monotonic()
    body = client.get(results_url, params={"offset": offset, "wait": 20}).json()
    assert body["done"] and body["results"] == [] and time.monotonic() - began < 5


def test_allocated_sessions_cover_no_more_orders_than_independent_ones(stack) -> None:
    client, engine = stack
    orders = _orders(engine)
    covered = {}
    for mode in ("independent", "allocated"):
        started = client.post(
            "/api/v1/ruptura/sessions",
            json={"pedidos": orders, "mode": mode, "reference_date": str(REFERENCE)},
        ).json()
        results = _follow(client, started["results_url"])
        assert {r["mode"] for r in results} == {mode}
        covered[mode] = sum(r["coberto_pelo_estoque"] for r in results)
    assert covered["allocated"] < covered["independent"]


def test_bad_input_gets_clear_errors(stack) -> None:
    client, engine = stack
    url = "/api/v1/ruptura/sessions"

    def error(response, status: int) -> dict:
        assert response.status_code == status, response.text
        return response.json()["error"]

    assert error(client.post(url, json={"pedidos": []}), 400)["code"] == "empty_order_list"
    many = [str(n) for n in range(101)]
    assert error(client.post(url, json={"pedidos": many}), 413)["code"] == "too_many_orders"
    assert error(
        client.post(url, content=b"{not json", headers={"content-type": "application/json"}), 422
    )
    assert error(client.post(url, json={"pedidos": ["ok", "drop table;"]}), 422)
    assert error(client.post(url, json={}), 422)["message"].endswith(
        "send either pedidos (a list) or all: true"
    )
    assert error(client.post(url, json={"pedidos": ["1"], "mode": "magic"}), 422)
    assert error(client.get(f"{url}/{'a' * 32}"), 404)["code"] == "session_not_found"
    assert error(client.get(f"{url}/not-an-id"), 422)
    assert error(client.get(f"{url}/{'a' * 32}/results", params={"offset": -1}), 422)

    started = client.post(
        url, json={"pedidos": ["NAO-EXISTE", _orders(engine)[0]], "reference_date": str(REFERENCE)}
    ).json()
    results = _follow(client, started["results_url"])
    missing = [r for r in results if r["num_pedido"] == "NAO-EXISTE"]
    assert missing and missing[0]["status"] == "nao_encontrado"


def test_deleting_a_session_drops_it(stack) -> None:
    client, engine = stack
    started = client.post("/api/v1/ruptura/sessions", json={"pedidos": _orders(engine)[:3]}).json()
    _follow(client, started["results_url"])
    assert client.delete(started["status_url"]).status_code == 204
    assert client.get(started["status_url"]).status_code == 404
    assert client.delete(started["status_url"]).status_code == 404


def test_one_order_is_analysed_at_once_and_cached(stack, redis_server) -> None:
    client, engine = stack
    order = _orders(engine)[0]
    first = client.get(f"/api/v1/ruptura/orders/{order}")
    assert first.status_code == 200 and first.json()["num_pedido"] == order
    # keyed on the carteira version the answer was judged on (the seed's load made it 1)
    ttl = redis_server.client().ttl(f"esteira:ruptura:order:independent:v1:{order}")
    assert 0 < ttl <= 15
    assert client.get(f"/api/v1/ruptura/orders/{order}").json() == first.json()
    missing = client.get("/api/v1/ruptura/orders/NAO-EXISTE")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "order_not_found"


def test_the_seeds_routes_keep_their_shapes(stack) -> None:
    client, engine = stack
    orders = _orders(engine)[:25]
    started = client.post(
        "/api/ruptura/worker/iniciar-processamento", json={"pedidos": [int(o) for o in orders]}
    )
    assert started.status_code == 200
    body = started.json()
    assert body["success"] is True and body["total_pedidos"] == 25 and body["total_lotes"] == 2
    assert body["workers"] == 1
    session_id = body["session_id"]

    offset, seen = 0, []
    deadline = time.monotonic() + 60
    while True:
        page = client.get(
            f"/api/ruptura/worker/buscar-resultados/{session_id}", params={"offset": offset}
        ).json()
        assert set(page) == {"success", "resultados", "offset_novo", "completo", "progresso"}
        seen += page["resultados"]
        offset = page["offset_novo"]
        if page["completo"]:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert sorted(r["num_pedido"] for r in seen) == sorted(orders)
    assert page["progresso"] == {"processados": 25, "total": 25, "percentual": 100.0}

    status = client.get(f"/api/ruptura/worker/status/{session_id}").json()
    assert status["success"] and status["completo"] and status["status"] == "done"

    single = client.get(f"/api/ruptura/analisar-pedido/{orders[0]}").json()
    assert single["success"] is True and single["num_pedido"] == orders[0]
    assert {
        "percentual_disponibilidade",
        "criticidade",
        "data_disponibilidade_total",
        "itens",
    } <= set(single)

    cleared = client.post("/api/ruptura/worker/limpar-cache", json={"session_id": session_id})
    assert cleared.json()["success"] is True
    gone = client.get(f"/api/ruptura/worker/status/{session_id}")
    assert gone.status_code == 404
    assert gone.json()["success"] is False and gone.json()["error"]["code"] == "session_not_found"


# A team's own database (SQLite here), read through a source profile of its own schema.
SOURCE_PROFILE = """
carteira: >
  SELECT pedido AS num_pedido, produto AS cod_produto, NULL AS nome_produto,
         pedida - entregue AS qtd_saldo, preco, NULL AS data_expedicao, NULL AS cnpj,
         NULL AS cliente, item AS sequencia
    FROM itens
estoque: SELECT produto AS cod_produto, saldo AS qtd FROM saldos
producao: SELECT produto AS cod_produto, dia AS data, qtd FROM movimentos WHERE tipo = 'E'
saidas: SELECT produto AS cod_produto, dia AS data, qtd FROM movimentos WHERE tipo = 'S'
versao: SELECT versao FROM controle
"""


@pytest.fixture
def source_stack(migrated_engine: Engine, redis_url: str, esteira_processes, tmp_path):
    """Esteira's own tables hold one carteira, the team's database another; a worker and a
    gateway configured with the team's database and profile."""
    seed_demo(migrated_engine, DemoSpec(orders=5, products=3, seed=2, reference_date=REFERENCE))
    team = create_engine(f"sqlite:///{tmp_path / 'equipe.db'}")
    with team.begin() as connection:
        for statement in (
            "CREATE TABLE itens (pedido TEXT, item INTEGER, produto TEXT, pedida NUMERIC,"
            " entregue NUMERIC, preco NUMERIC)",
            "CREATE TABLE saldos (produto TEXT PRIMARY KEY, saldo NUMERIC)",
            "CREATE TABLE movimentos (produto TEXT, dia DATE, qtd NUMERIC, tipo TEXT)",
            "CREATE TABLE controle (versao INTEGER)",
            "INSERT INTO itens VALUES ('EQ-1', 1, 'A', 12, 2, 1)",
            "INSERT INTO saldos VALUES ('A', 100)",
            "INSERT INTO controle VALUES (1)",
        ):
            connection.exec_driver_sql(statement)
    profile = tmp_path / "equipe.yaml"
    profile.write_text(SOURCE_PROFILE, encoding="utf-8")
    source = {"url": str(team.url), "profile": str(profile)}
    database_url = _start_worker(
        esteira_processes,
        migrated_engine,
        redis_url,
        ESTEIRA_RUPTURA_SOURCE_URL=source["url"],
        ESTEIRA_RUPTURA_SOURCE_PROFILE=source["profile"],
    )
    settings = ApiSettings(
        redis_url=redis_url,
        database_url=database_url,
        auth_disabled=True,
        ruptura_source_url=source["url"],
        ruptura_source_profile=source["profile"],
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, team
    team.dispose()


def test_the_worker_and_the_gateway_read_the_carteira_through_the_source_profile(
    source_stack,
) -> None:
    client, team = source_stack

    def session() -> dict:
        started = client.post("/api/v1/ruptura/sessions", json={"all": True})
        assert started.status_code == 202 and started.json()["total"] == 1  # not the seed's 5
        (result,) = _follow(client, started.json()["results_url"])
        assert client.get(started.json()["status_url"]).json()["workers_online"] == 1
        return result

    first = session()
    assert (first["num_pedido"], first["qtd_itens_ruptura"], first["valor_total"]) == (
        "EQ-1",
        0,
        10,
    )
    assert client.get("/api/v1/ruptura/orders/EQ-1").json()["qtd_itens_ruptura"] == 0
    assert client.get("/api/v1/ruptura/orders").json() == [{"num_pedido": "EQ-1", "cliente": ""}]

    with team.begin() as connection:  # the team's system sells its stock and says so
        connection.exec_driver_sql("UPDATE saldos SET saldo = 0")
        connection.exec_driver_sql("UPDATE controle SET versao = 2")
    assert session()["qtd_itens_ruptura"] == 1
    assert client.get("/api/v1/ruptura/orders/EQ-1").json()["percentual_disponibilidade"] == 0
