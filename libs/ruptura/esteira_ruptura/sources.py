"""Where the carteira is read from: Esteira's own tables (what `esteira load-csv` and the demo
seed write), or a team's own database through a source profile (YAML: four read-only queries
and, optionally, a version query).

data.py reads either the same way: each source hands it four relations with the columns it
reads, and a version. Every read goes through `CarteiraSource.reading()`: one connection, one
transaction that sees one state of the data where the database allows it (REPEATABLE READ and
READ ONLY on PostgreSQL, a read transaction on SQLite), so what is read with a version is that
version's data.

The version is what answers are keyed on (ARCHITECTURE "Ruptura semantics": every answer
started after a load completes is judged on the loaded data): Esteira's tables keep a counter
that every load bumps in its own transaction; a profile's `versao` query returns any value that
changes whenever the data does (a counter, a max(updated_at)). A profile without one has the
constant version "": its answers are then only as fresh as a judgement's reuse (30 s, judged.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    Connection,
    Date,
    Engine,
    Float,
    String,
    cast,
    column,
    create_engine,
    func,
    literal,
    make_url,
    select,
    text,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import Executable

from esteira_core.db import create_db_engine
from esteira_core.db.patience import Patience, patience_of
from esteira_ruptura.settings import RupturaSettings
from esteira_ruptura.tables import (
    carteira_itens,
    carteira_versao,
    estoque,
    programacao_producao,
    saidas_previstas,
)

logger = logging.getLogger(__name__)

# What data.py reads from each relation; `sequencia` orders an order's lines.
LINE_COLUMNS = (
    "num_pedido",
    "cod_produto",
    "nome_produto",
    "qtd_saldo",
    "preco",
    "data_expedicao",
    "cnpj",
    "cliente",
)
MOVEMENT_COLUMNS = ("cod_produto", "data", "qtd")
STOCK_COLUMNS = ("cod_produto", "qtd")


@dataclass(frozen=True)
class Relation:
    """One of the carteira's relations as data.py reads it: `columns` to filter and sort on,
    `values` to select (the same columns, or normalised: NULL text as '', numbers as floats),
    and the conditions every read of it adds."""

    columns: Mapping[str, ColumnElement[Any]]
    values: Mapping[str, ColumnElement[Any]]
    where: tuple[ColumnElement[bool], ...] = ()

    def __getitem__(self, name: str) -> ColumnElement[Any]:
        return self.columns[name]

    def selected(self, *names: str) -> list[ColumnElement[Any]]:
        return [self.values[name] for name in names]


def version_token(value: object) -> str:
    """A version as a short text fit for a cache key: an integer as it is, anything else (a
    timestamp, a text) by its digest; no version (None, an empty table) is ''."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return hashlib.blake2b(str(value).encode(), digest_size=8).hexdigest()


class SharedReads:
    """Reads of one value made one at a time in a process (`read`, in a thread), and shared:
    every caller gets the answer of a read begun after it asked, never of one begun before,
    which could miss a change made in between; whoever asks while a read is under way shares
    the one that follows it. A busy worker's jobs, started together, share a read instead of
    making one each (each read of a version is a pooled connection's ping, a transaction and a
    query: four database round trips).

    A read still running after HANGING_SECONDS is left to end on its own (a connection lost in
    the middle of a query waits for the operating system to notice), and later callers share
    new reads. A caller waits as the engine's Patience says (esteira_core.db.patience: 5 s in a
    gateway; in a worker, longer than a job waits). For one event loop at a time, as a process
    has."""

    HANGING_SECONDS = 5.0  # a version's read takes milliseconds

    def __init__(self, read: Callable[[], str], patience: Patience) -> None:
        self._read = read
        self._patience = patience
        self._running: asyncio.Future[str] | None = None
        self._begun = threading.Event()  # the running read has begun (in its thread)
        self._begun_at = 0.0
        self._following: asyncio.Future[str] | None = None  # begins once the running one ends

    async def __call__(self) -> str:
        began: list[Callable[[], bool]] = []

        def start() -> asyncio.Future[str]:
            answer, has_begun = self._answer()
            began.append(has_begun)
            return asyncio.shield(answer)

        return await self._patience.run(start, began=lambda: began[0]())

    def _answer(self) -> tuple[asyncio.Future[str], Callable[[], bool]]:
        """The read whose answer a caller asking now gets, and whether it has begun (in its
        thread: until then it waits for one, and tells nothing of the database)."""
        loop = asyncio.get_running_loop()
        if self._running is None or self._running.get_loop() is not loop:
            self._following = None
            return self._begin(), self._begun.is_set
        if not self._begun.is_set():  # it begins after this call: it will do
            return self._running, self._begun.is_set
        if time.monotonic() - self._begun_at > self.HANGING_SECONDS:
            # Left to hang: a new read, for this caller and those who waited for the next one.
            return self._begin(), self._begun.is_set
        if self._following is None:
            self._following = loop.create_future()
        return self._following, lambda: True  # behind a read that has begun

    def _begin(self) -> asyncio.Future[str]:
        """A new running read, which whoever waited for the next one gets too."""
        begun = self._begun = threading.Event()
        self._begun_at = time.monotonic()

        def read() -> str:
            begun.set()
            return self._read()

        reading = self._running = asyncio.ensure_future(asyncio.to_thread(read))
        waiting, self._following = self._following, None
        if waiting is not None:
            reading.add_done_callback(lambda answer: _settle(waiting, answer))
        reading.add_done_callback(self._ended)
        return reading

    def _ended(self, reading: asyncio.Future[str]) -> None:
        if reading is not self._running:
            return  # a read left to hang, or of a loop since abandoned
        self._running = None
        if self._following is not None:
            self._begin()


def _settle(waiting: asyncio.Future[str], answer: asyncio.Future[str]) -> None:
    if waiting.done():
        return
    if answer.cancelled():
        waiting.cancel()
    elif (error := answer.exception()) is not None:
        waiting.set_exception(error)
    else:
        waiting.set_result(answer.result())


@dataclass(frozen=True)
class CarteiraSource:
    """The carteira's four relations on one database, and how to read its version."""

    name: str
    engine: Engine
    lines: Relation
    stock: Relation
    inflows: Relation
    outflows: Relation
    version_query: Executable | None
    owns_engine: bool = field(default=False)
    # Its lines' columns are of types PostgreSQL's binary format gives psycopg as they are in
    # text (str, float, date; a team's database may have types it would give as bytes).
    binary_lines: bool = field(default=False)
    _version_reads: SharedReads = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        reads = SharedReads(self.version, patience_of(self.engine))
        object.__setattr__(self, "_version_reads", reads)

    @contextmanager
    def reading(self) -> Iterator[CarteiraReading]:
        """One connection and one transaction for everything read in it (see the module)."""
        with self.engine.connect() as connection:
            backend = self.engine.dialect.name
            if backend == "postgresql":
                connection = connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            elif backend == "sqlite":
                # pysqlite opens no transaction before a SELECT: each would see its own state.
                connection.exec_driver_sql("BEGIN")
            yield CarteiraReading(self, connection)

    def version(self, connection: Connection | None = None) -> str:
        """The version of the data `connection` sees, or without one the current version, in
        one small query ('' for a source without a version query)."""
        if self.version_query is None:
            return ""
        if connection is None:
            with self.engine.connect() as own:
                return version_token(own.execute(self.version_query).scalar())
        return version_token(connection.execute(self.version_query).scalar())

    async def current_version(self) -> str:
        """The version of the data now: from a read begun after the call, shared with the
        calls made while it is under way (SharedReads)."""
        return await self._version_reads()

    def close(self) -> None:
        """Closes the source's own connections (never those of an engine it was lent)."""
        if self.owns_engine:
            self.engine.dispose()


@dataclass(frozen=True)
class CarteiraReading:
    """A source with the connection (and transaction) one read goes through."""

    source: CarteiraSource
    connection: Connection

    def version(self) -> str:
        """The version of the data this reading sees."""
        return self.source.version(self.connection)


def esteira_tables(engine: Engine) -> CarteiraSource:
    """Esteira's own tables: the active open lines, stock, production and planned outflows."""

    def plain(columns: Mapping[str, ColumnElement[Any]], *where: ColumnElement[bool]) -> Relation:
        return Relation(columns, columns, where)

    lines = {name: carteira_itens.c[name] for name in LINE_COLUMNS}
    return CarteiraSource(
        name="esteira",
        engine=engine,
        lines=plain({**lines, "sequencia": carteira_itens.c.id}, carteira_itens.c.ativo.is_(True)),
        stock=plain({name: estoque.c[name] for name in STOCK_COLUMNS}),
        inflows=plain({name: programacao_producao.c[name] for name in MOVEMENT_COLUMNS}),
        outflows=plain({name: saidas_previstas.c[name] for name in MOVEMENT_COLUMNS}),
        version_query=select(carteira_versao.c.versao).where(carteira_versao.c.id == 1),
        binary_lines=True,
    )


class SourceQueries(BaseModel):
    """A source profile: read-only SQL in the team's own schema, each query returning the
    columns named here (other columns are ignored). Esteira wraps each query as a subquery and
    adds its own filters (orders, products, dates), so a query returns everything, unfiltered.
    """

    model_config = ConfigDict(extra="forbid")

    carteira: str = Field(
        description="The open lines of the active orders: num_pedido and cod_produto (text), "
        "nome_produto, qtd_saldo (the quantity still to deliver), preco, data_expedicao (a "
        "date), cnpj, cliente, and sequencia (any sortable value: the line's place in its order)."
        " Lines whose qtd_saldo is not above 0 are left out by Esteira."
    )
    estoque: str = Field(description="Current stock: cod_produto, qtd (each product once).")
    producao: str = Field(
        description="The production schedule: cod_produto, data (a date), qtd. Overdue "
        "production does not count."
    )
    saidas: str = Field(
        description="Planned outflows: cod_produto, data (a date), qtd. Overdue ones count today."
    )
    versao: str | None = Field(
        None,
        description="One value that changes whenever the data above does (a counter, a "
        "max(updated_at)). Without it answers may be judged on data up to 30 s old (how long "
        "a judged carteira is reused).",
    )


def _text_relation(sql: str, name: str, typed: Mapping[str, Any]) -> Any:
    return text(sql).columns(*(column(key, kind) for key, kind in typed.items())).subquery(name)


def profile_source(engine: Engine, queries: SourceQueries, *, name: str) -> CarteiraSource:
    """A source reading a team's database through a profile's queries. Text may come back
    NULL and numbers as decimals or integers: what is selected is normalised in the query
    (COALESCE, CAST AS FLOAT), while filters and sorting use the columns as they are, so the
    team's indexes still serve them."""
    empty = literal("")

    def text_or_empty(value: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.coalesce(value, empty)

    def number(value: ColumnElement[Any], default: float | None = None) -> ColumnElement[Any]:
        as_float = cast(value, Float)
        return as_float if default is None else func.coalesce(as_float, literal(default))

    carteira = _text_relation(
        queries.carteira,
        "carteira",
        {
            "num_pedido": String,
            "cod_produto": String,
            "nome_produto": String,
            "qtd_saldo": Float,
            "preco": Float,
            "data_expedicao": Date,
            "cnpj": String,
            "cliente": String,
            "sequencia": String,
        },
    )
    lines_values = {
        "num_pedido": carteira.c.num_pedido,
        "cod_produto": carteira.c.cod_produto,
        "nome_produto": text_or_empty(carteira.c.nome_produto),
        "qtd_saldo": number(carteira.c.qtd_saldo),
        "preco": number(carteira.c.preco, 0.0),
        "data_expedicao": carteira.c.data_expedicao,
        "cnpj": text_or_empty(carteira.c.cnpj),
        "cliente": text_or_empty(carteira.c.cliente),
    }

    def movements(sql: str, relation: str, columns: tuple[str, ...]) -> Relation:
        typed = {"cod_produto": String, "data": Date, "qtd": Float}
        sub = _text_relation(sql, relation, {key: typed[key] for key in columns})
        raw = {key: sub.c[key] for key in columns}
        return Relation(raw, {**raw, "qtd": number(sub.c.qtd).label("qtd")})

    return CarteiraSource(
        name=name,
        engine=engine,
        lines=Relation(
            {**lines_values, "sequencia": carteira.c.sequencia},
            {name: value.label(name) for name, value in lines_values.items()},
        ),
        stock=movements(queries.estoque, "estoque", STOCK_COLUMNS),
        inflows=movements(queries.producao, "producao", MOVEMENT_COLUMNS),
        outflows=movements(queries.saidas, "saidas", MOVEMENT_COLUMNS),
        version_query=None if queries.versao is None else text(queries.versao),
        owns_engine=True,
    )


def load_queries(path: Path) -> SourceQueries:
    """A source profile's queries from its YAML file."""
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a source profile must be a mapping")
    return SourceQueries.model_validate(loaded)


def configured(
    settings: RupturaSettings, db: Engine, *, lock_timeout_seconds: float | None = None
) -> CarteiraSource:
    """The carteira a process reads (one constructor for the workers and the gateway): a team's
    database through its source profile when ESTEIRA_RUPTURA_SOURCE_URL and _PROFILE say so,
    else Esteira's own tables on `db`. Nothing connects here. A team's PostgreSQL gets
    Esteira's connect timeout, and its transactions wait for a lock at most
    `lock_timeout_seconds` (its nightly load may hold its tables for as long as it runs): set
    in each transaction (SET LOCAL), not as a connection's startup option, which a pooler in
    front of the team's database (PgBouncer) may refuse."""
    if settings.ruptura_source_url is None or settings.ruptura_source_profile is None:
        return esteira_tables(db)
    url = make_url(settings.ruptura_source_url)
    if settings.ruptura_source_password is not None:
        url = url.set(password=settings.ruptura_source_password.get_secret_value())
    queries = load_queries(settings.ruptura_source_profile)
    if url.get_backend_name() == "postgresql":
        engine = create_db_engine(
            url, lock_timeout_seconds=lock_timeout_seconds, lock_timeout_per_transaction=True
        )
    else:  # its driver's own arguments; and a team's SQLite file is not Esteira's to set up
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=1800)
    logger.info(
        "carteira read through a source profile",
        extra={
            "profile": settings.ruptura_source_profile.name,
            "database": url.render_as_string(hide_password=True),
        },
    )
    return profile_source(engine, queries, name=settings.ruptura_source_profile.name)
