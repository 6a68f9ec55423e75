"""`make bench-ruptura`: the analysis engine against the seeds' per-order way on one generated
carteira, then sessions of the whole carteira through the gateway and two worker processes.

The 20,000-order carteira runs twice, on PostgreSQL (what a cluster runs) and on SQLite (the
local default), each started here. Per database:
- the baseline analyses a 1,000-order sample one order at a time with its own queries, and
  must agree with the engine line by line on that sample;
- the engine analyses all 20,000 orders in one process (the carteira judged once, then 1,000
  batches of 20 reports);
- the session runs real processes (redis-server, `esteira api`, two `esteira worker ruptura`)
  and is timed from the POST to the last result read by offset, as a browser reads it (long
  polls, each answer parsed).
Then a 100,000-order carteira (~800,000 lines) on PostgreSQL, its session timed the same way,
with each worker's peak resident memory read from outside it (the kernel's high-water mark of
each worker process, /proc/<pid>/status VmHWM, fresh processes for that session).
The speedup compares time per order. The summary line reports PostgreSQL.
"""

import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import orjson

from bench.ruptura_baseline import analyse_order
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_core.jobs import RUPTURA_BATCH_SIZE, RupturaMode
from esteira_ruptura import data
from esteira_ruptura.demo import DemoSpec, seed_demo
from esteira_ruptura.models import OrderReport
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionAnalysis
from esteira_ruptura.sources import esteira_tables
from esteira_testing.components import LocalStack, PostgresServer

REFERENCE = date(2026, 3, 2)
SESSION_ORDERS = 20_000
BIG_SESSION_ORDERS = 100_000
SAMPLE_ORDERS = 1_000
WORKERS = 2
PRODUCTS = 2_000


@dataclass
class Figures:
    database: str
    lines: int
    baseline_ms_per_order: float
    engine_seconds: float
    engine_ms_per_order: float
    session_seconds: float
    session_orders: int
    agree: bool

    @property
    def speedup(self) -> float:
        return self.baseline_ms_per_order / self.engine_ms_per_order


def _same_verdicts(engine_results: list[dict], baseline_results: list) -> bool:
    for result, (num_pedido, verdicts) in zip(engine_results, baseline_results, strict=True):
        report = OrderReport.model_validate(result)
        assert report.num_pedido == num_pedido
        mine = [
            (
                item.ruptura,
                round(item.ruptura_qtd, 3),
                None
                if item.data_disponibilidade is None
                else (item.data_disponibilidade - REFERENCE).days,
            )
            for item in report.itens
        ]
        if mine != [(r, round(q, 3), d) for r, q, d in verdicts]:
            return False
    return True


@dataclass
class Session:
    seconds: float
    orders: int
    worker_peak_rss_mib: float  # the largest of the workers'


def _peak_rss_mib(pid: int) -> float:
    """The kernel's high-water mark of a process's resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def _session(database_url: str, workdir: Path) -> Session:
    """The whole carteira's session on fresh processes, from the POST to the last result read."""
    with LocalStack(workdir, database_url, ESTEIRA_LOG_LEVEL="WARNING") as stack:
        workers = [stack.worker("ruptura") for _ in range(WORKERS)]
        with httpx.Client(base_url=stack.gateway(), timeout=60) as client:
            started = time.perf_counter()
            response = client.post(
                "/api/v1/ruptura/sessions", json={"all": True, "reference_date": str(REFERENCE)}
            )
            response.raise_for_status()
            url = f"/api/v1/ruptura/sessions/{response.json()['session_id']}/results"
            offset = 0
            while True:
                page = orjson.loads(
                    client.get(url, params={"offset": offset, "limit": 5000, "wait": 25}).content
                )
                offset = page["next_offset"]
                if page["done"]:
                    break
            seconds = time.perf_counter() - started
        peak = max(_peak_rss_mib(worker.process.pid) for worker in workers)
    return Session(seconds, offset, peak)


def _measure(database: str, database_url: str, workdir: Path) -> Figures:
    engine = create_db_engine(database_url)
    upgrade(engine.url)
    counts = seed_demo(
        engine, DemoSpec(orders=SESSION_ORDERS, products=PRODUCTS, seed=1, reference_date=REFERENCE)
    )
    source = esteira_tables(engine)
    with source.reading() as carteira:
        orders = data.active_order_numbers(carteira)
    sample = orders[:: len(orders) // SAMPLE_ORDERS][:SAMPLE_ORDERS]

    started = time.perf_counter()
    baseline = [analyse_order(engine, order, REFERENCE) for order in sample]
    baseline_seconds = time.perf_counter() - started

    started = time.perf_counter()
    analysis = SessionAnalysis(
        source, Horizon(REFERENCE), RupturaMode.INDEPENDENT, whole_carteira=True
    )
    results = [
        result
        for start in range(0, len(orders), RUPTURA_BATCH_SIZE)
        for result in analysis.analyse(orders[start : start + RUPTURA_BATCH_SIZE])
    ]
    engine_seconds = time.perf_counter() - started
    by_order = {result["num_pedido"]: result for result in results}
    agree = _same_verdicts([by_order[order] for order in sample], baseline)
    engine.dispose()

    session = _session(database_url, workdir)
    return Figures(
        database=database,
        lines=counts["carteira_itens"],
        baseline_ms_per_order=1000 * baseline_seconds / len(sample),
        engine_seconds=engine_seconds,
        engine_ms_per_order=1000 * engine_seconds / len(orders),
        session_seconds=session.seconds,
        session_orders=session.orders,
        agree=agree,
    )


def _big_session(database_url: str, workdir: Path) -> tuple[int, Session]:
    """The 100,000-order carteira's lines, and its session."""
    engine = create_db_engine(database_url)
    upgrade(engine.url)
    spec = DemoSpec(orders=BIG_SESSION_ORDERS, products=PRODUCTS, seed=1, reference_date=REFERENCE)
    lines = seed_demo(engine, spec)["carteira_itens"]
    engine.dispose()
    return lines, _session(database_url, workdir)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="esteira-bench-ruptura-"))
    postgres = PostgresServer().start()
    try:
        figures = [
            _measure("PostgreSQL", postgres.create_database(), workdir),
            _measure("SQLite", f"sqlite:///{workdir / 'bench.db'}", workdir),
        ]
        big_lines, big = _big_session(postgres.create_database(), workdir)
    finally:
        postgres.close()

    print(
        f"carteira: {SESSION_ORDERS} orders, {figures[0].lines} lines, {PRODUCTS} products; "
        f"baseline on a {SAMPLE_ORDERS}-order sample\n"
    )
    print(
        "| database | baseline ms/order | engine ms/order | engine, all orders s | speedup "
        f"| session s ({WORKERS} workers) | orders/s | verdicts agree |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for f in figures:
        print(
            f"| {f.database} | {f.baseline_ms_per_order:.2f} | {f.engine_ms_per_order:.3f} "
            f"| {f.engine_seconds:.2f} | {f.speedup:.0f}x | {f.session_seconds:.2f} "
            f"| {f.session_orders / f.session_seconds:.0f} | {'yes' if f.agree else 'NO'} |"
        )
    print(
        f"\n{BIG_SESSION_ORDERS}-order carteira ({big_lines} lines) on PostgreSQL: session "
        f"{big.seconds:.2f} s ({big.orders / big.seconds:.0f} orders/s), worker peak RSS "
        f"{big.worker_peak_rss_mib:.0f} MiB"
    )
    main_figures = figures[0]
    print(
        f"\nruptura: engine speedup {main_figures.speedup:.0f}x over per-order baseline; "
        f"{main_figures.session_orders}-order session {main_figures.session_seconds:.1f} s "
        f"end-to-end; {big.orders}-order session {big.seconds:.1f} s, "
        f"{big.worker_peak_rss_mib:.0f} MiB worker peak RSS"
    )


if __name__ == "__main__":
    main()
