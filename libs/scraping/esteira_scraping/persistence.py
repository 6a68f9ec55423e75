"""Recording a scraped OS: cliente, equipamento and OS upserted in one transaction, with every
raw field the portal showed kept on the OS row.

- cliente: by CNPJ (digits only) when the portal gives a valid one, else by normalized name;
- equipamento: by serial number, else by (fabricante, modelo, descrição);
- OS: by número.
Concurrent workers may record the same cliente at once: the unique keys decide, and the loser
reads the winner's row (ON CONFLICT on both PostgreSQL and SQLite).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from esteira_scraping.flow import ScrapedOS
from esteira_scraping.tables import clientes, equipamentos, ordens_servico


@dataclass(frozen=True)
class SavedOS:
    os_id: int
    cliente_id: int | None
    equipamento_id: int | None
    record: dict[str, Any]  # the OS as every route shows it (`os_record`)


def cnpj_digits(value: str | None) -> str | None:
    digits = re.sub(r"\D", "", value or "")
    return digits if len(digits) == 14 else None


def normalize_name(value: str) -> str:
    """Upper case, no accents, single spaces: 'Clínica  São Camilo' -> 'CLINICA SAO CAMILO'."""
    text = unicodedata.normalize("NFKD", value)
    text = "".join(char for char in text if not unicodedata.combining(char))
    return " ".join(text.upper().split())


def _insert(connection: Connection, table: Table) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _upsert_unique(connection: Connection, table: Table, key: str, values: dict[str, Any]) -> int:
    """Insert or update by a unique column; returns the row id."""
    statement = _insert(connection, table).values(**values)
    changes = {name: statement.excluded[name] for name in values if name != key}
    changes["updated_at"] = func.now()
    statement = statement.on_conflict_do_update(index_elements=[key], set_=changes).returning(
        table.c.id
    )
    row_id: int = connection.execute(statement).scalar_one()
    return row_id


def _insert_id(connection: Connection, table: Table, values: dict[str, Any]) -> int:
    row_id: int = connection.execute(
        insert(table).values(**values).returning(table.c.id)
    ).scalar_one()
    return row_id


def _cliente(connection: Connection, fields: dict[str, str]) -> int | None:
    name = fields.get("cliente", "").strip()
    cnpj = cnpj_digits(fields.get("cnpj"))
    if not name and cnpj is None:
        return None
    values = {
        "nome": name or cnpj or "",
        "nome_normalizado": normalize_name(name or cnpj or ""),
        "municipio": fields.get("municipio") or None,
    }
    if cnpj is not None:
        return _upsert_unique(connection, clientes, "cnpj", {"cnpj": cnpj, **values})
    existing = connection.execute(
        select(clientes.c.id).where(
            clientes.c.cnpj.is_(None), clientes.c.nome_normalizado == values["nome_normalizado"]
        )
    ).scalar()
    if existing is not None:
        connection.execute(update(clientes).where(clientes.c.id == existing).values(**values))
        return int(existing)
    return _insert_id(connection, clientes, values)


def _equipamento(
    connection: Connection, fields: dict[str, str], cliente_id: int | None
) -> int | None:
    values = {
        "tipo": fields.get("tipo_equipamento") or None,
        "descricao": fields.get("descricao") or None,
        "fabricante": fields.get("fabricante") or None,
        "modelo": fields.get("modelo") or None,
        "cliente_id": cliente_id,
    }
    serial = (fields.get("numero_serie") or "").strip()
    if serial:
        return _upsert_unique(
            connection, equipamentos, "numero_serie", {"numero_serie": serial, **values}
        )
    if not any(values[k] for k in ("descricao", "fabricante", "modelo")):
        return None
    existing = connection.execute(
        select(equipamentos.c.id).where(
            equipamentos.c.numero_serie.is_(None),
            equipamentos.c.fabricante.is_not_distinct_from(values["fabricante"]),
            equipamentos.c.modelo.is_not_distinct_from(values["modelo"]),
            equipamentos.c.descricao.is_not_distinct_from(values["descricao"]),
        )
    ).scalar()
    if existing is not None:
        connection.execute(
            update(equipamentos).where(equipamentos.c.id == existing).values(**values)
        )
        return int(existing)
    return _insert_id(connection, equipamentos, values)


def save_os(engine: Engine, scraped: ScrapedOS) -> SavedOS:
    with engine.begin() as connection:
        cliente_id = _cliente(connection, scraped.fields)
        equipamento_id = _equipamento(connection, scraped.fields, cliente_id)
        os_id = _upsert_unique(
            connection,
            ordens_servico,
            "numero_os",
            {
                "numero_os": scraped.numero_os,
                "status": scraped.fields.get("status_os") or None,
                "cliente_id": cliente_id,
                "equipamento_id": equipamento_id,
                "raw_fields": [list(pair) for pair in scraped.raw],
                "scraped_at": datetime.now(UTC),
            },
        )
        record = os_record(connection, scraped.numero_os)
    assert record is not None  # written in this transaction
    return SavedOS(os_id, cliente_id, equipamento_id, record)


def find_os(engine: Engine, numero_os: str) -> dict[str, Any] | None:
    with engine.connect() as connection:
        return os_record(connection, numero_os)


# Built once: building the statement (and its cache key) on every lookup cost about as much CPU
# as running it, and the gateway looks a recorded OS up on every request for one.
_OS_RECORD = (
    select(
        ordens_servico.c.id,
        ordens_servico.c.numero_os,
        ordens_servico.c.status,
        ordens_servico.c.raw_fields,
        ordens_servico.c.scraped_at,
        clientes.c.id.label("cliente_id"),
        clientes.c.nome.label("cliente"),
        clientes.c.cnpj,
        clientes.c.municipio,
        equipamentos.c.id.label("equipamento_id"),
        equipamentos.c.tipo,
        equipamentos.c.descricao,
        equipamentos.c.fabricante,
        equipamentos.c.modelo,
        equipamentos.c.numero_serie,
    )
    .select_from(ordens_servico)
    .outerjoin(clientes, clientes.c.id == ordens_servico.c.cliente_id)
    .outerjoin(equipamentos, equipamentos.c.id == ordens_servico.c.equipamento_id)
    .where(ordens_servico.c.numero_os == bindparam("numero_os"))
)


def os_record(connection: Connection, numero_os: str) -> dict[str, Any] | None:
    """The recorded OS with its cliente and equipamento: the one shape every route and task
    result shows an OS in (CNPJ as digits; the portal's own text of every field in `campos`)."""
    row = connection.execute(_OS_RECORD, {"numero_os": numero_os}).mappings().first()
    if row is None:
        return None
    equipamento = " ".join(filter(None, (row["tipo"], row["fabricante"], row["modelo"])))
    return {
        "numero_os": row["numero_os"],
        "status_os": row["status"],
        "cliente": row["cliente"],
        "cnpj": row["cnpj"],
        "municipio": row["municipio"],
        "equipamento": equipamento or None,
        "numero_serie": row["numero_serie"],
        "cliente_id": row["cliente_id"],
        "equipamento_id": row["equipamento_id"],
        "campos": dict(row["raw_fields"]),
        "scraped_at": row["scraped_at"].isoformat() if row["scraped_at"] else None,
    }
