"""A big session served by two worker processes reads a carteira judged once, by one of them,
for both (counted on the workers' /metrics); when that judge is SIGKILLed in the middle of its
judgement, the other judges again and every order is still reported exactly once; a session
whose judged carteira is pinned ends while PostgreSQL crashes, or hangs, served by a worker
that never read its version; a session started after a load reads the loaded data. Real processes:
redis-server, PostgreSQL, `esteira api` and `esteira worker ruptura`."""

import os
import signal
import time
from datetime import date
from pathlib import Path

import httpx
import pytest
import redis

from esteira_core.db import create_db_engine
from esteira_core.jobs import RupturaMode
from esteira_ruptura import data
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionAnalysis
from esteira_ruptura.sources import esteira_tables
from esteira_testing.components import EsteiraProcess, LocalStack, PostgresServer, seeded_database
from esteira_testing.waiting import wait_until

pytestmark = pytest.mark.integration
REFERENCE = "2026-03-02"


def _judgements(worker: EsteiraProcess) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{worker.metrics_port}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("esteira_ruptura_carteira_judgements_total{")
    )


def _results(gateway: str, session_id: str) -> list[dict]:
    results: list[dict] = []
    with httpx.Client(base_url=gateway, timeout=60) as client:
        deadline = time.monotonic() + 120
        while True:
            page = client.get(
                f"/api/v1/ruptura/sessions/{session_id}/results",
                params={"offset": len(results), "limit": 5000, "wait": 5},
            ).json()
            results += page["results"]
            if page["done"]:
                return results
            assert time.monotonic() < deadline, f"the session stopped at {len(results)}"


def _by_order(results: list[dict]) -> dict[str, dict]:
    """Each order's result, checking there is one per order (batches end in any order)."""
    found = {result["num_pedido"]: result for result in results}
    assert len(found) == len(results)
    return found


def _start(gateway: str) -> str:
    body = {"all": True, "reference_date": REFERENCE}
    response = httpx.post(f"{gateway}/api/v1/ruptura/sessions", json=body, timeout=60)
    response.raise_for_status()
    return str(response.json()["session_id"])


def _expected(database_url: str) -> list[dict]:
    engine = create_db_engine(database_url)
    try:
        source = esteira_tables(engine)
        with source.reading() as reading:
            orders = data.active_order_numbers(reading)
        horizon = Horizon(date.fromisoformat(REFERENCE))
        return SessionAnalysis(source, horizon, RupturaMode.INDEPENDENT).analyse(orders)
    finally:
        engine.dispose()


def test_two_workers_serve_a_big_session_from_one_judgement(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    database_url = seeded_database(postgres_server.create_database(), orders=3000, products=200)
    with LocalStack(tmp_path, database_url) as stack:
        workers = [stack.worker("ruptura") for _ in range(2)]
        gateway = stack.gateway()
        results = _results(gateway, _start(gateway))
        assert _by_order(results) == _by_order(_expected(database_url))  # as judged here
        assert sum(_judgements(worker) for worker in workers) == 1

        again = _results(gateway, _start(gateway))  # the same data: the same judgement serves
        assert _by_order(again) == _by_order(results)
        assert sum(_judgements(worker) for worker in workers) == 1


def test_a_judge_sigkilled_mid_judgement_is_replaced_and_no_order_is_lost_or_doubled(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    database_url = seeded_database(postgres_server.create_database(), orders=12000, products=400)
    with LocalStack(tmp_path, database_url, ESTEIRA_HEARTBEAT_INTERVAL_SECONDS="0.5") as stack:
        workers = [stack.worker("ruptura").process.pid for _ in range(2)]
        processes = {process.process.pid: process for process in stack.processes}
        gateway = stack.gateway()
        store = redis.Redis.from_url(stack.redis.url)
        session_id = _start(gateway)

        def judging() -> tuple[int, bytes] | None:
            """The judge's pid and its judgement, once it has written some reports."""
            pinned = store.hget(f"esteira:ruptura:session:{session_id}", "judged")
            if pinned is None:
                return None
            state = store.hgetall(f"esteira:ruptura:judged:{pinned.decode()}:state")
            written = store.hlen(f"esteira:ruptura:judged:{pinned.decode()}:reports")
            if b"complete" in state or not written:
                return None
            return int(state[b"judge"].decode().rsplit("-", 1)[1]), pinned

        pid, killed_judgement = wait_until(judging, 60, "no judge was seen at work")
        assert pid in workers
        os.kill(pid, signal.SIGKILL)
        processes[pid].process.wait(10)
        assert not store.hexists(
            f"esteira:ruptura:judged:{killed_judgement.decode()}:state", "complete"
        )

        results = _by_order(_results(gateway, session_id))
        assert len(results) == 12000 and results == _by_order(_expected(database_url))
        (survivor,) = [processes[other] for other in workers if other != pid]
        assert _judgements(survivor) == 1  # it judged again, once
        assert store.hget(f"esteira:ruptura:session:{session_id}", "judged") != killed_judgement


@pytest.mark.parametrize("failure", ["crashes", "hangs"])
def test_a_session_reading_a_judged_carteira_ends_while_postgresql_fails(
    tmp_path: Path, failure: str
) -> None:
    """An operator's database fails in the middle of a big session whose carteira is judged
    already: its reports are in Redis, so the session ends, every order analysed once, served
    by a worker that never read the session's data version. PostgreSQL either crashes (stopped
    at once: the worker's pooled connections are cut) or hangs without closing anything (frozen,
    as a paused VM or a stalled disk leaves it: the worker's read of the version waits on a
    pooled connection opened before, and is left to hang after the engine's Patience, 5 s;
    before, its jobs waited on it until their deadline, try after try)."""
    postgres = PostgresServer().start()
    try:
        database_url = seeded_database(postgres.create_database(), orders=20000, products=200)
        with LocalStack(
            tmp_path,
            database_url,
            ESTEIRA_WORKER_CONCURRENCY="1",
            ESTEIRA_HEARTBEAT_INTERVAL_SECONDS="0.5",
        ) as stack:
            late = stack.worker("ruptura")
            gateway = stack.gateway()
            judged_before = _by_order(_results(gateway, _start(gateway)))  # judged by `late`
            os.kill(late.process.pid, signal.SIGSTOP)  # its pool keeps the judge's connections
            first = stack.worker("ruptura")
            session_id = _start(gateway)  # reads that judgement: the same data
            status = f"{gateway}/api/v1/ruptura/sessions/{session_id}"
            wait_until(lambda: httpx.get(status).json()["processed"] > 0, 60, "never started")
            os.kill(first.process.pid, signal.SIGSTOP)  # its running job is held, then freed
            try:
                assert httpx.get(status).json()["processed"] < 20000
                if failure == "crashes":
                    postgres.stop()
                else:
                    postgres.freeze()
                os.kill(late.process.pid, signal.SIGCONT)
                results = _results(gateway, session_id)
            finally:
                if failure == "hangs":
                    postgres.thaw()  # the hung read ends: `late` stops when asked to
                os.kill(first.process.pid, signal.SIGKILL)
                first.process.wait(10)
        assert _by_order(results) == judged_before
        assert not [result for result in results if result["status"] == "erro"]
    finally:
        postgres.close()


def test_a_session_started_after_a_load_reads_the_loaded_data(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    database_url = seeded_database(postgres_server.create_database(), orders=1500, products=100)
    with LocalStack(tmp_path, database_url) as stack:
        stack.worker("ruptura")
        gateway = stack.gateway()
        before = _by_order(_results(gateway, _start(gateway)))
        assert before == _by_order(_expected(database_url))

        seeded_database(database_url, orders=1500, products=100, seed=6)  # a load: new data
        after = _by_order(_results(gateway, _start(gateway)))
        assert after == _by_order(_expected(database_url))  # judged on the loaded data
        assert after != before
