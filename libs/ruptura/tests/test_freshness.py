"""Every answer started after a carteira load completes is judged on the loaded data: sessions
through the workers' path (use_cases.analyse_batch, a process's SessionCache and the carteira
judged for every worker, a real redis-server) and single orders through their Redis cache, on
SQLite and PostgreSQL."""

import asyncio
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from esteira_core.jobs import RupturaBatchPayload, RupturaMode
from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings
from esteira_ruptura import judged, sessions, use_cases
from esteira_ruptura.csv_import import load
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionCache
from esteira_ruptura.settings import RupturaSettings
from esteira_ruptura.sources import CarteiraSource, esteira_tables
from esteira_testing.ruptura import record_session

pytestmark = pytest.mark.integration
REFERENCE = date(2026, 3, 2)
ORDER = "P-1"


def load_carteira(engine: Engine, folder: Path, stock: int) -> None:
    """The issue's carteira: one line of 10 at price 1, and `stock` of its product."""
    carteira, estoque = folder / "carteira.csv", folder / "estoque.csv"
    carteira.write_text(f"num_pedido;cod_produto;qtd_saldo;preco\n{ORDER};A;10;1\n")
    estoque.write_text(f"cod_produto;qtd\nA;{stock}\n")
    load(engine, {"carteira": carteira, "estoque": estoque})


async def run_session(
    redis_url: str,
    source: CarteiraSource,
    cache: SessionCache,
    mode: RupturaMode,
    session_orders: int,
) -> tuple[dict[str, Any], str | None]:
    """One session of one batch, analysed as a worker does; its one result, and the judged
    carteira it read (None: its batch judged its own orders)."""
    redis = create_redis(CoreSettings(redis_url=redis_url))
    judges = judged.Judges()
    try:
        session_id = uuid.uuid4().hex
        await record_session(redis, session_id, total=1, batches=1, mode=mode)
        batch = RupturaBatchPayload(
            session_id=session_id,
            batch_index=0,
            pedidos=[ORDER],
            mode=mode,
            reference_date=REFERENCE,
            session_orders=session_orders,
        )
        assert await use_cases.analyse_batch(redis, source, cache, judges, batch) == 1
        await asyncio.gather(*judges._tasks)
        page = await sessions.results_since(redis, session_id, "t", 0, 10)
        (result,) = [orjson.loads(raw) for raw in page.results]
        pinned = await redis.hget(f"esteira:ruptura:session:{session_id}", "judged")
        return result, None if pinned is None else pinned.decode()
    finally:
        await redis.aclose()


def in_rupture(result: dict[str, Any]) -> bool:
    assert result["status"] == "analisado" and result["num_pedido"] == ORDER
    return bool(result["qtd_itens_ruptura"])


@pytest.mark.parametrize(
    ("mode", "session_orders"),
    [
        (RupturaMode.INDEPENDENT, use_cases.WHOLE_CARTEIRA_FROM),  # a big session
        (RupturaMode.ALLOCATED, 1),  # always the whole carteira
    ],
)
def test_a_session_started_right_after_a_load_is_judged_on_the_loaded_data(
    migrated_engine: Engine,
    redis_url: str,
    tmp_path: Path,
    mode: RupturaMode,
    session_orders: int,
) -> None:
    source, cache = esteira_tables(migrated_engine), SessionCache()

    def session() -> tuple[dict[str, Any], str | None]:
        return asyncio.run(run_session(redis_url, source, cache, mode, session_orders))

    load_carteira(migrated_engine, tmp_path, stock=100)
    before, judged_before = session()
    assert not in_rupture(before) and before["percentual_disponibilidade"] == 100
    assert judged_before is not None
    assert session() == (before, judged_before)  # the same version: the same judgement serves it

    load_carteira(migrated_engine, tmp_path, stock=0)
    after, judged_after = session()
    assert in_rupture(after)
    assert after["valor_ruptura"] == 10 and after["percentual_disponibilidade"] == 0
    assert judged_after not in (None, judged_before)  # judged again, on the new data


def test_a_small_session_takes_a_judged_carteira_only_of_its_own_version(
    migrated_engine: Engine, redis_url: str, tmp_path: Path
) -> None:
    source, cache = esteira_tables(migrated_engine), SessionCache()
    mode = RupturaMode.INDEPENDENT

    def session(session_orders: int) -> tuple[dict[str, Any], str | None]:
        return asyncio.run(run_session(redis_url, source, cache, mode, session_orders))

    load_carteira(migrated_engine, tmp_path, stock=100)
    big, judged_id = session(use_cases.WHOLE_CARTEIRA_FROM)  # judges the carteira
    assert not in_rupture(big)
    assert session(1) == (big, judged_id)  # a small one of its version reads it too
    load_carteira(migrated_engine, tmp_path, stock=0)
    small, none = session(1)  # that judgement is of the version before: not for it
    assert in_rupture(small) and none is None
    assert in_rupture(session(use_cases.WHOLE_CARTEIRA_FROM)[0])  # nor for a big one


def test_a_session_keeps_the_data_it_started_with(
    migrated_engine: Engine, redis_url: str, tmp_path: Path
) -> None:
    """A session's later batches agree with its first, even across a load."""
    cache = SessionCache()
    load_carteira(migrated_engine, tmp_path, stock=100)
    analysis = cache.get(
        "s",
        esteira_tables(migrated_engine),
        Horizon(REFERENCE),
        RupturaMode.INDEPENDENT,
        whole_carteira=True,
    )
    first = analysis.analyse([ORDER])
    load_carteira(migrated_engine, tmp_path, stock=0)
    assert analysis.analyse([ORDER]) == first
    assert (
        cache.get(
            "s",
            esteira_tables(migrated_engine),
            Horizon(REFERENCE),
            RupturaMode.INDEPENDENT,
            whole_carteira=True,
        )
        is analysis
    )


def test_one_order_asked_right_after_a_load_is_judged_on_the_loaded_data(
    migrated_engine: Engine, redis_url: str, redis_server, tmp_path: Path
) -> None:
    source = esteira_tables(migrated_engine)
    settings = RupturaSettings(redis_url=redis_url, ruptura_order_cache_seconds=15)

    async def ask() -> dict[str, Any]:
        redis = create_redis(settings)
        try:
            report = await use_cases.analyse_order(
                redis, source, settings, ORDER, RupturaMode.INDEPENDENT
            )
            return report.model_dump(mode="json")
        finally:
            await redis.aclose()

    load_carteira(migrated_engine, tmp_path, stock=100)
    before = asyncio.run(ask())
    assert before["qtd_itens_ruptura"] == 0
    cached = redis_server.client().get(f"esteira:ruptura:order:independent:v1:{ORDER}")
    assert cached is not None and orjson.loads(cached) == before  # the cache is in use

    load_carteira(migrated_engine, tmp_path, stock=0)
    after = asyncio.run(ask())
    assert after["qtd_itens_ruptura"] == 1 and after["percentual_disponibilidade"] == 0
    assert redis_server.client().exists(f"esteira:ruptura:order:independent:v2:{ORDER}")
