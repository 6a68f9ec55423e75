"""`esteira load-csv`: a team's own spreadsheet exports into the carteira tables.

Every file is read and checked before anything is written; each problem is reported as
`file:line: what`, and then nothing is loaded. The tables given are replaced in one transaction,
which also bumps the carteira version (see data.carteira_version).

What is accepted, because it is what spreadsheets export:

- Encoding: UTF-8 with or without a BOM; a file that is not valid UTF-8 is read as Windows-1252
  (Excel's Brazilian export; it covers Latin-1's letters). `encoding` forces one.
- Separator: `;`, `,` or a tab, decided from the header line (the one that splits it into the
  most known column names; an Excel `sep=;` first line is honoured). Quoted fields, CRLF.
- Numbers: `1234`, `1234,5`, `1234.5`, `1.234,56`, `1,234.56`, `1.234.567`. When a value has
  both marks, the last one is the decimal mark; a mark repeated, or followed by other than three
  digits, is unambiguous too. Only a value like `1.234` or `12,500` (one mark, after 1-3 digits
  not starting with 0, then exactly three digits) is ambiguous: it takes the file's decimal
  mark, which is `decimal` if given, else the one the file's unambiguous numbers use, else a
  comma when the file is `;`-separated (Excel's convention: `;` lists go with decimal commas).
  Otherwise (a `,`-separated file whose other numbers show no decimal mark, or a file whose
  numbers show both) it is refused. Negative and non-finite numbers are refused.
- Dates `YYYY-MM-DD` or `DD/MM/YYYY`; ativo as 1/0, true/false, sim/não.
- Rows whose fields are all blank are skipped. A file with a header and no rows is refused
  unless `allow_empty` (then it empties its table).
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, String, Table, delete, insert

from esteira_ruptura.data import bump_carteira_version
from esteira_ruptura.models import ORDER_NUMBER_MAX_LENGTH
from esteira_ruptura.tables import carteira_itens, estoque, programacao_producao, saidas_previstas

DecimalMark = Literal["comma", "dot"]
_MARKS: dict[DecimalMark, str] = {"comma": ",", "dot": "."}


class ValueProblem(ValueError):
    """A field that cannot be read; the message says what is wrong with it."""


# --- fields ---------------------------------------------------------------------------------


def _text(value: str) -> str:
    if not value.strip():
        raise ValueProblem("is empty")
    return value.strip()


def _order_number(value: str) -> str:
    text = _text(value)
    if len(text) > ORDER_NUMBER_MAX_LENGTH or any(char.isspace() for char in text):
        raise ValueProblem(
            f"{text!r} is not an order number (no spaces, at most {ORDER_NUMBER_MAX_LENGTH})"
        )
    return text


_GROUPED = {mark: re.compile(rf"[1-9]\d{{0,2}}(?:{re.escape(mark)}\d{{3}})+") for mark in ".,"}
_LEADING_GROUP = re.compile(r"[1-9]\d{0,2}")
_NUMBER_CHARACTERS = re.compile(r"\d[\d.,]*")
_NON_FINITE = {"nan", "inf", "infinity"}


def decimal_evidence(value: str) -> str | None:
    """The decimal mark a value shows unambiguously ('.' or ','), if any."""
    body = value.strip().lstrip("-")
    if not _NUMBER_CHARACTERS.fullmatch(body):
        return None
    dots, commas = body.count("."), body.count(",")
    if dots and commas:
        return "." if body.rfind(".") > body.rfind(",") else ","
    if dots + commas == 0:
        return None
    mark = "." if dots else ","
    if dots + commas > 1:  # 1.234.567: the mark groups thousands, the other one is the decimal
        return "," if mark == "." else "."
    whole, fraction = body.split(mark)
    if len(fraction) == 3 and _LEADING_GROUP.fullmatch(whole):
        return None  # 1.234: either
    return mark


def read_number(value: str, decimal: str | None) -> float:
    """A non-negative finite number; `decimal` ('.' or ',') settles values like 1.234."""
    text = value.strip()
    if text.lower().lstrip("+-") in _NON_FINITE:
        raise ValueProblem(f"{value!r} is not a finite number")
    negative = text.startswith("-")
    body = text[1:] if negative else text
    if not _NUMBER_CHARACTERS.fullmatch(body):
        raise ValueProblem(f"{value!r} is not a number")
    dots, commas = body.count("."), body.count(",")
    if dots + commas == 0:
        number = float(body)
    elif dots and commas:
        point = "." if body.rfind(".") > body.rfind(",") else ","
        group = "," if point == "." else "."
        whole, _, fraction = body.rpartition(point)
        if point in whole or not _GROUPED[group].fullmatch(whole) or not fraction:
            raise ValueProblem(f"{value!r} is not a number (thousands in groups of three?)")
        number = float(whole.replace(group, "") + "." + fraction)
    else:
        mark = "." if dots else ","
        whole, _, fraction = body.partition(mark)
        if dots + commas > 1:
            if not _GROUPED[mark].fullmatch(body):
                raise ValueProblem(f"{value!r} is not a number (thousands in groups of three?)")
            number = float(body.replace(mark, ""))
        elif not whole or not fraction:
            raise ValueProblem(f"{value!r} is not a number")
        elif len(fraction) == 3 and _LEADING_GROUP.fullmatch(whole) and decimal != mark:
            if decimal is None:
                raise ValueProblem(
                    f"{value!r} is ambiguous: {whole}{fraction} if {mark!r} groups thousands, "
                    f"{whole}.{fraction} if it is the decimal mark, and the file's other numbers "
                    "do not settle it: write it without the thousands mark, or say which the "
                    "decimal mark is (--decimal comma or --decimal dot)"
                )
            number = float(whole + fraction)
        else:
            number = float(whole + "." + fraction)
    if not math.isfinite(number):
        raise ValueProblem(f"{value!r} is too large")
    if negative and number != 0:
        raise ValueProblem(f"{value!r} is negative")
    return number


_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_BR_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def _day(value: str) -> date:
    text = value.strip()
    try:
        if match := _ISO_DATE.fullmatch(text):
            year, month, day = match.groups()
            return date(int(year), int(month), int(day))
        if match := _BR_DATE.fullmatch(text):
            day, month, year = match.groups()
            return date(int(year), int(month), int(day))
    except ValueError:
        pass
    raise ValueProblem(f"{value!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)")


def _optional_day(value: str) -> date | None:
    return _day(value) if value.strip() else None


def _flag(value: str) -> bool:
    text = value.strip().lower()
    if text in ("", "1", "true", "sim", "s", "yes"):
        return True
    if text in ("0", "false", "nao", "não", "n", "no"):
        return False
    raise ValueProblem(f"{value!r} is not a yes/no value")


def _number(value: str) -> float:  # a marker: the file's decimal mark is given when reading
    return read_number(value, None)


REQUIRED = object()
Column = tuple[str, Callable[[str], Any], Any]  # name, parser, default (REQUIRED: none)


@dataclass(frozen=True)
class CsvKind:
    table: Table
    columns: tuple[Column, ...]
    unique: str | None = None  # a column no two rows may share (the table's key)


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
    "estoque": CsvKind(
        estoque, (("cod_produto", _text, REQUIRED), ("qtd", _number, REQUIRED)), "cod_produto"
    ),
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


class _FileProblem(Exception):
    def __init__(self, line: int | None, what: str) -> None:
        super().__init__(what)
        self.line = line
        self.what = what


# --- files ----------------------------------------------------------------------------------


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


# A multi-byte UTF-8 character; Portuguese text in Windows-1252 practically never holds one.
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}")


def _decode(data: bytes, encoding: str | None = None) -> str:
    """The file's text: `encoding` if given, else UTF-8 (BOM or not), else Windows-1252."""
    if data.startswith(b"PK\x03\x04"):
        raise _FileProblem(None, "is a spreadsheet (xlsx or ods), not CSV: save it as CSV first")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise _FileProblem(None, f"unknown encoding {encoding!r}") from None
        candidates = [encoding]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    elif data.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    else:
        candidates = ["utf-8", "cp1252", "latin-1"]  # latin-1 reads any byte
    for index, candidate in enumerate(candidates):
        try:
            text = data.decode(candidate)
        except UnicodeDecodeError as exc:
            if candidate == "utf-8" and _UTF8_SEQUENCE.search(data):
                raise _FileProblem(
                    _line_of(data, exc.start),
                    f"mixes UTF-8 with another encoding (byte 0x{data[exc.start]:02x} is not "
                    "UTF-8): fix that line, or say which encoding the file has (--encoding)",
                ) from None
            if index + 1 < len(candidates):
                continue
            raise _FileProblem(
                _line_of(data, exc.start),
                f"is not valid {candidate} (byte 0x{data[exc.start]:02x}); "
                "say which encoding it has (--encoding)",
            ) from None
        if "\x00" in text:
            raise _FileProblem(
                _line_of(data, data.index(b"\x00")),
                "holds NUL characters: not a text CSV (UTF-16 without a BOM? say --encoding)",
            )
        return text.removeprefix("\ufeff")
    raise AssertionError("unreachable")  # pragma: no cover


def _read(path: Path, encoding: str | None) -> str:
    if path.is_dir():
        raise _FileProblem(None, "is a folder, not a CSV file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _FileProblem(None, "no such file") from None
    except OSError as exc:
        raise _FileProblem(None, f"cannot be read ({exc.strerror or exc})") from None
    return _decode(data, encoding)


_SEPARATORS = (";", ",", "\t")


def _header_names(line: str, separator: str) -> list[str]:
    fields = next(csv.reader([line], delimiter=separator), [])
    return [field.strip().lower() for field in fields]


def choose_separator(header_line: str, known: Sequence[str]) -> str:
    """The separator that splits the header into the most known names (then the most fields)."""

    def score(separator: str) -> tuple[int, int]:
        names = _header_names(header_line, separator)
        return (sum(name in known for name in names), len(names))

    return max(_SEPARATORS, key=score)


@dataclass
class _Table:
    separator: str
    header_line: int
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (first line of the record, fields)


_LINE_END = re.compile(r"\r\n|\r|\n")
_SEP_HINT = re.compile(r'"?sep=(.)"?')  # Excel's own first line, naming the separator


def _split(text: str, known: Sequence[str]) -> _Table:
    empty = _FileProblem(1, f"the file is empty (expected a header: {', '.join(known)})")
    lines = [line for line in _LINE_END.split(text) if line.strip()]
    if not lines:
        raise empty
    hint = _SEP_HINT.fullmatch(lines[0].strip(" "))
    separator = hint.group(1) if hint else choose_separator(lines[0], known)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    header: list[str] | None = None
    header_line = 1
    rows: list[tuple[int, list[str]]] = []
    end = 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not any(field.strip() for field in record):
                continue
            if hint:
                hint = None
            elif header is None:
                header, header_line = [field.strip().lower() for field in record], start
            else:
                rows.append((start, record))
    except csv.Error as exc:
        raise _FileProblem(end + 1, f"cannot be read as CSV ({exc})") from None
    if header is None:
        raise empty
    if len(header) == 1:
        raise _FileProblem(
            header_line, f"one column only ({header[0]!r}): columns are separated by ';' or ','"
        )
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        raise _FileProblem(header_line, f"column(s) {', '.join(repeated)} appear more than once")
    return _Table(separator, header_line, header, rows)


def _file_decimal(table: _Table, numeric: list[int], decimal: DecimalMark | None) -> str | None:
    if decimal is not None:
        return _MARKS[decimal]
    marks = {
        mark
        for _, fields in table.rows
        for index in numeric
        if index < len(fields) and (mark := decimal_evidence(fields[index])) is not None
    }
    if len(marks) == 1:
        return marks.pop()
    if not marks and table.separator == ";":
        return ","
    return None  # no evidence in a ','-separated file, or both marks used: refuse 1.234


def parse(
    kind: str,
    path: Path,
    problems: list[str],
    *,
    encoding: str | None = None,
    decimal: DecimalMark | None = None,
    allow_empty: bool = False,
) -> list[dict[str, Any]]:
    """The file's rows as table rows; each problem is appended to `problems` ('file:line: what')."""
    spec = KINDS[kind]
    name = str(path)
    known = [column for column, _, _ in spec.columns]
    try:
        table = _split(_read(path, encoding), known)
    except _FileProblem as problem:
        where = name if problem.line is None else f"{name}:{problem.line}"
        problems.append(f"{where}: {problem.what}")
        return []
    header_line = table.header_line
    missing = [column for column, _, default in spec.columns if default is REQUIRED]
    missing = [column for column in missing if column not in table.header]
    if missing:
        problems.append(
            f"{name}:{header_line}: missing column(s) {', '.join(missing)} "
            f"(the header, split by {table.separator!r}, has: {', '.join(table.header)})"
        )
        return []
    if not table.rows:
        if not allow_empty:
            problems.append(
                f"{name}:{header_line}: a header and no rows; nothing was loaded "
                "(to empty the table on purpose, say --allow-empty)"
            )
        return []
    position = {column: table.header.index(column) for column in known if column in table.header}
    numeric = [position[c] for c, parser, _ in spec.columns if parser is _number and c in position]
    mark = _file_decimal(table, numeric, decimal)
    parsed: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    for line, fields in table.rows:
        if len(fields) != len(table.header):
            hint = ""
            if table.separator == "," and len(fields) > len(table.header):
                hint = ' (a decimal comma in a ","-separated file must be quoted: "1,5")'
            problems.append(
                f"{name}:{line}: {len(fields)} fields, the header has {len(table.header)}{hint}"
            )
            continue
        values: dict[str, Any] = {}
        for column, parser, default in spec.columns:
            raw = fields[position[column]] if column in position else ""
            if default is not REQUIRED and not raw.strip():
                values[column] = default
                continue
            try:
                value = read_number(raw, mark) if parser is _number else parser(raw)
            except ValueProblem as exc:
                problems.append(f"{name}:{line}: {column} {exc}")
                continue
            kind_of_column = spec.table.c[column].type
            length = kind_of_column.length if isinstance(kind_of_column, String) else None
            if isinstance(value, str) and length and len(value) > length:
                problems.append(f"{name}:{line}: {column} is longer than {length} characters")
                continue
            values[column] = value
        if spec.unique is not None and spec.unique in values:
            key = values[spec.unique]
            if key in first_seen:
                problems.append(
                    f"{name}:{line}: {spec.unique} {key!r} again (first on line {first_seen[key]})"
                )
            first_seen.setdefault(key, line)
        parsed.append(values)
    return parsed


def load(
    engine: Engine,
    files: dict[str, Path],
    *,
    encoding: str | None = None,
    decimal: DecimalMark | None = None,
    allow_empty: bool = False,
) -> dict[str, int]:
    """Checks every file, then replaces the tables they are for and bumps the carteira version,
    in one transaction. Raises CsvRejected, with nothing changed, when any file has a problem."""
    problems: list[str] = []
    parsed = {
        kind: parse(
            kind, path, problems, encoding=encoding, decimal=decimal, allow_empty=allow_empty
        )
        for kind, path in files.items()
    }
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
