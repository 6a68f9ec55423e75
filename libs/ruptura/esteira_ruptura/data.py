"""Reading the carteira: a bounded number of queries per call, whatever the number of orders,
from whichever source holds it (sources.py: Esteira's tables or a team's database), through one
`CarteiraReading` (a source and the connection its read goes through)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing, suppress
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Connection, Select, func, insert, select, update

from esteira_ruptura.models import OrderLine
from esteira_ruptura.projection import Horizon, Movement, Projection
from esteira_ruptura.sources import (
    LINE_COLUMNS,
    MOVEMENT_COLUMNS,
    STOCK_COLUMNS,
    CarteiraReading,
    Relation,
)
from esteira_ruptura.tables import carteira_versao

# Bound parameters per IN (...): far below SQLite's and PostgreSQL's limits.
CHUNK = 900


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def carteira_version(connection: Connection) -> int:
    """How many times the carteira has been loaded: answers judged on one version of the data
    may be reused until the next load bumps it (0 before the first load)."""
    version = connection.execute(
        select(carteira_versao.c.versao).where(carteira_versao.c.id == 1)
    ).scalar_one_or_none()
    return 0 if version is None else int(version)


def bump_carteira_version(connection: Connection) -> int:
    """Called by every load, inside its transaction, so the new version and the new data are
    seen together; returns the new version. Concurrent loads queue on the row's lock."""
    bumped = connection.execute(
        update(carteira_versao)
        .where(carteira_versao.c.id == 1)
        .values(versao=carteira_versao.c.versao + 1)
    )
    if bumped.rowcount == 0:  # the row was never made (or was deleted): start again at 1
        connection.execute(insert(carteira_versao).values(id=1, versao=1))
    return carteira_version(connection)


def _active_lines(lines: Relation) -> Select[tuple[object, ...]]:
    return (
        select(*lines.selected(*LINE_COLUMNS))
        .where(*lines.where, lines["qtd_saldo"] > 0)
        .order_by(lines["num_pedido"], lines["sequencia"])
    )


def load_lines(carteira: CarteiraReading, order_numbers: Sequence[str] | None) -> list[OrderLine]:
    """Active open lines of the given orders (None: of every active order).

    The rows are SQLAlchemy's own: named tuples with OrderLine's fields in OrderLine's order, so
    copying 160,000 of them into OrderLine objects would only cost time.
    """
    lines = carteira.source.lines
    execute = carteira.connection.execute
    if order_numbers is None:  # fetchall: one driver call for the whole carteira
        rows = execute(_active_lines(lines)).all()
    else:
        rows = [
            row
            for chunk in _chunks(order_numbers)
            for row in execute(_active_lines(lines).where(lines["num_pedido"].in_(chunk)))
        ]
    return cast(list[OrderLine], rows)


def stream_lines(carteira: CarteiraReading, rows_per_chunk: int) -> Iterator[list[OrderLine]]:
    """Every active line, in chunks of about `rows_per_chunk` rows that never split an order
    (each ends with an order's last line), read through one server-side cursor: the whole
    carteira is never in memory at once.

    On PostgreSQL the driver's own rows are taken as they come: it already returns these
    columns as str, float and date, and SQLAlchemy's row processing would double the read. From
    a source whose types allow it they come in binary, which the driver reads for half the CPU
    (no float or date to parse)."""
    connection, query = carteira.connection, _active_lines(carteira.source.lines)
    if connection.dialect.name == "postgresql":
        compiled = query.compile(dialect=connection.dialect)
        # A named cursor is a server-side one, in the reading's transaction.
        driver = connection.connection.driver_connection
        assert driver is not None  # the reading's connection is open
        cursor: Any = driver.cursor(
            name="esteira_carteira_lines", binary=carteira.source.binary_lines
        )
        cursor.execute(str(compiled), compiled.params)
        # The database reads the next rows while these are judged (the driver waits for them
        # without the GIL). SQLite's connection belongs to its thread, and reads in process.
        fetched = _fetched(lambda: cursor.fetchmany(rows_per_chunk), ahead=True)
    else:
        cursor = connection.execution_options(yield_per=rows_per_chunk).execute(query)
        fetched = _fetched(lambda: cursor.fetchmany(rows_per_chunk), ahead=False)
    pending: list[OrderLine] = []
    with closing(fetched):
        for rows in cast(Iterator[list[OrderLine]], fetched):
            pending += rows
            last_order = pending[-1][0]  # num_pedido
            end = len(pending)
            while end and pending[end - 1][0] == last_order:
                end -= 1
            if end:  # the last order may go on in the next rows: it waits for them
                yield pending[:end]
                pending = pending[end:]
    if pending:
        yield pending
    cursor.close()


def _fetched(
    fetch: Callable[[], Sequence[Any]], *, ahead: bool
) -> Generator[Sequence[Any], None, None]:
    """What `fetch` returns, call after call until it returns nothing. `ahead`: the calls are
    made in a thread of their own, each while the caller works on the rows before it (at most
    one answer waits); that thread has ended whenever this returns or is closed, so the
    cursor is free again."""
    if not ahead:
        while rows := fetch():
            yield rows
        return
    ready: queue.Queue[tuple[Sequence[Any] | None, BaseException | None]] = queue.Queue(1)
    done = threading.Event()

    def offer(item: tuple[Sequence[Any] | None, BaseException | None]) -> None:
        while not done.is_set():
            with suppress(queue.Full):
                ready.put(item, timeout=0.1)
                return

    def read() -> None:
        try:
            while not done.is_set():
                rows = fetch()
                offer((rows, None))
                if not rows:
                    return
        except BaseException as error:  # raised in the caller's thread
            offer((None, error))

    reader = threading.Thread(target=read, name="carteira-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            answer, error = ready.get()
            if error is not None:
                raise error
            if not answer:
                return
            yield answer
    finally:
        done.set()
        reader.join()


def active_order_numbers(carteira: CarteiraReading) -> list[str]:
    lines = carteira.source.lines
    query = (
        select(lines["num_pedido"])
        .where(*lines.where, lines["qtd_saldo"] > 0)
        .distinct()
        .order_by(lines["num_pedido"])
    )
    return list(carteira.connection.execute(query).scalars())


def order_summaries(carteira: CarteiraReading, limit: int) -> list[tuple[str, str]]:
    """(num_pedido, cliente) of the first active orders by number."""
    lines = carteira.source.lines
    query = (
        select(lines["num_pedido"], func.min(lines.values["cliente"]))
        .where(*lines.where, lines["qtd_saldo"] > 0)
        .group_by(lines["num_pedido"])
        .order_by(lines["num_pedido"])
        .limit(limit)
    )
    return [(number, cliente) for number, cliente in carteira.connection.execute(query)]


def load_projection(
    carteira: CarteiraReading, horizon: Horizon, products: Sequence[str] | None
) -> Projection:
    """Stock, production and planned outflows of the products (None: all), in three queries
    (per chunk of products), projected over the horizon."""
    source, execute = carteira.source, carteira.connection.execute
    stock, inflows, outflows = source.stock, source.inflows, source.outflows
    end = horizon.start + timedelta(days=horizon.days)
    stock_query = select(*stock.selected(*STOCK_COLUMNS)).where(*stock.where)
    inflow_query = select(*inflows.selected(*MOVEMENT_COLUMNS)).where(
        *inflows.where, inflows["data"] >= horizon.start, inflows["data"] < end
    )
    outflow_query = select(*outflows.selected(*MOVEMENT_COLUMNS)).where(
        *outflows.where, outflows["data"] < end
    )
    scopes: list[Sequence[str] | None] = [None] if products is None else list(_chunks(products))
    stock_of: dict[str, float] = {}
    ins: list[Movement] = []
    outs: list[Movement] = []
    for scope in scopes:
        queries = (stock_query, inflow_query, outflow_query)
        if scope is not None:
            queries = (
                stock_query.where(stock["cod_produto"].in_(scope)),
                inflow_query.where(inflows["cod_produto"].in_(scope)),
                outflow_query.where(outflows["cod_produto"].in_(scope)),
            )
        for code, qtd in execute(queries[0]):
            stock_of[code] = float(qtd)
        ins += [Movement(c, d, float(q)) for c, d, q in execute(queries[1])]
        outs += [Movement(c, d, float(q)) for c, d, q in execute(queries[2])]
    return Projection.build(horizon, stock_of, ins, outs)
