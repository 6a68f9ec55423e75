"""`esteira load-csv`: a team's own exports into the carteira tables.

Every file is read and checked before anything is written; a bad row is reported with its file
and line number, and then nothing is loaded. The tables given are replaced in one transaction.
Brazilian exports are welcome: `;` or `,` separators, decimal commas (1.234,56), dates as
YYYY-MM-DD or DD/MM/YYYY, and ativo as 1/0, true/false, sim/não.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, delete, insert

from esteira_core.db.schema import carteira_itens, estoque, programacao_producao, saidas_previstas
from esteira_ruptura.data import bump_carteira_version
from esteira_ruptura.models import ORDER_NUMBER_MAX_LENGTH


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("is empty")
    return value.strip()


def _order_number(value: str) -> str:
    text = _text(value)
    if len(text) > ORDER_NUMBER_MAX_LENGTH or any(char.isspace() for char in text):
        raise ValueError(f"is not an order number (no spaces, at most {ORDER_NUMBER_MAX_LENGTH})")
    return text


def _number(value: str) -> float:
    text = value.strip()
    if "," in text:  # 1.234,56 -> 1234.56
        text = text.replace(".", "").replace(",", ".")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None


def _day(value: str) -> date:
    text = value.strip()
    for layout in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, layout).date()
        except ValueError:
            continue
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)")


def _optional_day(value: str) -> date | None:
    return _day(value) if value.strip() else None


def _flag(value: str) -> bool:
    text = value.strip().lower()
    if text in ("", "1", "true", "sim", "s", "yes"):
        return True
    if text in ("0", "false", "nao", "não", "n", "no"):
        return False
    raise ValueError(f"{value!r} is not a yes/no value")


REQUIRED = object()
Column = tuple[str, Callable[[str], Any], Any]  # name, parser, default (REQUIRED: none)


@dataclass(frozen=True)
class CsvKind:
    table: Table
    columns: tuple[Column, ...]


KINDS = {
    "carteira": CsvKind(
        carteira_itens,
        (
            ("num_pedido", _order_number, REQUIRED),
            ("cod_produto", _text, REQUIRED),
            ("nome_produto", str.strip, ""),
            ("qtd_saldo", _number, REQUIRED),
            ("preco", _number, 0.0),
            ("data_expedicao", _optional_day, None),
            ("cnpj", str.strip, ""),
            ("cliente", str.strip, ""),
            ("ativo", _flag, True),
        ),
    ),
    "estoque": CsvKind(estoque, (("cod_produto", _text, REQUIRED), ("qtd", _number, REQUIRED))),
    "producao": CsvKind(
        programacao_producao,
        (("cod_produto", _text, REQUIRED), ("data", _day, REQUIRED), ("qtd", _number, REQUIRED)),
    ),
    "saidas": CsvKind(
        saidas_previstas,
        (("cod_produto", _text, REQUIRED), ("data", _day, REQUIRED), ("qtd", _number, REQUIRED)),
    ),
}


class CsvRejected(Exception):
    """The files have errors; nothing was loaded. `problems` lists them as 'file:line: what'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s); nothing was loaded")
        self.problems = problems


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        dialect = csv.Sniffer().sniff(sample, delimiters=";,\t") if sample else csv.excel
        reader = csv.DictReader(handle, dialect=dialect)
        for row in reader:
            yield reader.line_num, {(k or "").strip().lower(): (v or "") for k, v in row.items()}


def parse(kind: str, path: Path, problems: list[str]) -> list[dict[str, Any]]:
    spec = KINDS[kind]
    parsed: list[dict[str, Any]] = []
    header_checked = False
    for line, row in _rows(path):
        if not header_checked:
            missing = [
                name for name, _, default in spec.columns if default is REQUIRED and name not in row
            ]
            if missing:
                problems.append(f"{path.name}:1: missing column(s) {', '.join(missing)}")
                return []
            header_checked = True
        values: dict[str, Any] = {}
        for name, parser, default in spec.columns:
            if default is not REQUIRED and not row.get(name, "").strip():
                values[name] = default
                continue
            try:
                values[name] = parser(row[name])
            except ValueError as exc:
                problems.append(f"{path.name}:{line}: {name} {exc}")
        parsed.append(values)
    return parsed


def load(engine: Engine, files: dict[str, Path]) -> dict[str, int]:
    """Checks every file, then replaces the tables they are for and bumps the carteira version,
    in one transaction."""
    problems: list[str] = []
    parsed = {kind: parse(kind, path, problems) for kind, path in files.items()}
    if problems:
        raise CsvRejected(problems)
    with engine.begin() as connection:
        for kind, rows in parsed.items():
            table = KINDS[kind].table
            connection.execute(delete(table))
            if rows:
                connection.execute(insert(table), rows)
        bump_carteira_version(connection)
    return {kind: len(rows) for kind, rows in parsed.items()}
