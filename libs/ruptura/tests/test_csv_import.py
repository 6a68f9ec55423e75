"""esteira load-csv: what spreadsheets export, read whole and checked first, then one transaction
(SQLite and PostgreSQL); every problem is 'file:line: what' and changes nothing."""

import codecs
import csv
import io
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from esteira_ruptura.csv_import import CsvRejected, decimal_evidence, load, parse, read_number
from esteira_ruptura.data import carteira_version
from esteira_ruptura.demo import DemoSpec, seed_demo
from esteira_ruptura.tables import carteira_itens, estoque, programacao_producao

integration = pytest.mark.integration


def count(engine: Engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def carteira_rows(engine: Engine) -> list[tuple]:
    columns = [column for column in carteira_itens.c if column.name != "id"]
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(*columns).order_by(*columns))]


def snapshot(engine: Engine) -> tuple:
    """Everything a load may change: the carteira, the stock, the version."""
    with engine.connect() as connection:
        stock = connection.execute(select(estoque).order_by(estoque.c.cod_produto)).all()
        version = carteira_version(connection)
    return carteira_rows(engine), [tuple(row) for row in stock], version


# --- the same carteira as a spreadsheet exports it, in every form teams have ---------------

HEADER = ["num_pedido", "cod_produto", "nome_produto", "qtd_saldo", "preco", "data_expedicao"]
HEADER += ["cliente"]
ROWS = [
    ["P-1", "A", "AÇÚCAR CRISTAL", "1.234", "2,50", "05/03/2026", "Padaria São João"],
    ["P-1", "B", "Café, torrado", "1,5", "1.000,25", "", "Padaria São João"],
    ["P-2", "A", "AÇÚCAR CRISTAL", "12", "2,5", "2026-03-06", "Açougue"],
]
# (num_pedido, cod_produto, nome_produto, qtd_saldo, preco, data_expedicao, cnpj, cliente, ativo)
EXPECTED = sorted(
    [
        ("P-1", "A", "AÇÚCAR CRISTAL", 1234.0, 2.5, date(2026, 3, 5), "", "Padaria São João", True),
        ("P-1", "B", "Café, torrado", 1.5, 1000.25, None, "", "Padaria São João", True),
        ("P-2", "A", "AÇÚCAR CRISTAL", 12.0, 2.5, date(2026, 3, 6), "", "Açougue", True),
    ]
)


def export(separator: str, line_end: str = "\n", rows: list[list[str]] = ROWS) -> str:
    """As a spreadsheet writes it: fields holding the separator (or a quote) are quoted."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=separator, lineterminator=line_end)
    writer.writerows([HEADER, *rows])
    return out.getvalue()


GOOD_EXPORTS = {
    "utf8 ;": export(";").encode("utf-8"),
    "utf8 BOM, CRLF": codecs.BOM_UTF8 + export(";", "\r\n").encode("utf-8"),
    "windows-1252 ; CRLF (Excel pt-BR)": export(";", "\r\n").encode("cp1252"),
    "latin-1 , CRLF, quoted decimal commas": export(",", "\r\n").encode("latin-1"),
    "Excel sep= line": ("sep=;\r\n" + export(";", "\r\n")).encode("cp1252"),
    "Excel sep= line, tab": ("sep=\t\r\n" + export("\t", "\r\n")).encode("cp1252"),
    "tab, UTF-16 with BOM (Excel unicode text)": export("\t", "\r\n").encode("utf-16"),
    "old Mac CR line ends": export(";", "\r").encode("cp1252"),
    "blank lines and blank rows": (export(";") + ";;;;;;\n\n").encode("utf-8"),
}


def test_the_exports_are_what_they_claim_to_be() -> None:
    """The test's own files: Latin-1 bytes really are not UTF-8, the quoted field is quoted."""
    latin = GOOD_EXPORTS["latin-1 , CRLF, quoted decimal commas"]
    assert "AÇÚCAR".encode("latin-1") in latin and b'"1,5"' in latin and b"\r\n" in latin
    with pytest.raises(UnicodeDecodeError):
        latin.decode("utf-8")
    assert GOOD_EXPORTS["utf8 BOM, CRLF"].startswith(codecs.BOM_UTF8)


@integration
@pytest.mark.parametrize("variant", list(GOOD_EXPORTS))
def test_every_export_of_one_carteira_loads_the_same_rows(
    migrated_engine: Engine, tmp_path: Path, variant: str
) -> None:
    path = tmp_path / "carteira.csv"
    path.write_bytes(GOOD_EXPORTS[variant])
    assert load(migrated_engine, {"carteira": path}) == {"carteira": 3}
    assert carteira_rows(migrated_engine) == EXPECTED


@integration
def test_a_brazilian_export_is_loaded_whole(migrated_engine: Engine, tmp_path: Path) -> None:
    carteira = tmp_path / "carteira.csv"
    carteira.write_text(
        "num_pedido;cod_produto;nome_produto;qtd_saldo;preco;data_expedicao;cnpj;cliente;ativo\n"
        "P-1;A;Parafuso;1.234,5;2,50;05/03/2026;11.222.333/0001-44;Cliente Um;sim\n"
        "P-1;B;Porca;10;0,10;;;;\n"
        "P-2;A;Parafuso;3;2.5;2026-03-06;;Cliente Dois;não\n",
        encoding="utf-8",
    )
    stock = tmp_path / "estoque.csv"
    stock.write_text("cod_produto,qtd\nA,100\nB,5\n")
    production = tmp_path / "producao.csv"
    production.write_text("cod_produto,data,qtd\nA,2026-03-10,50\n")
    counts = load(migrated_engine, {"carteira": carteira, "estoque": stock, "producao": production})
    assert counts == {"carteira": 3, "estoque": 2, "producao": 1}
    with migrated_engine.connect() as connection:
        first = (
            connection.execute(
                select(carteira_itens).where(
                    carteira_itens.c.cod_produto == "A", carteira_itens.c.num_pedido == "P-1"
                )
            )
            .mappings()
            .one()
        )
        inactive = connection.execute(
            select(carteira_itens.c.ativo).where(carteira_itens.c.num_pedido == "P-2")
        ).scalar_one()
    assert (first["qtd_saldo"], first["preco"], first["data_expedicao"]) == (
        1234.5,
        2.5,
        date(2026, 3, 5),
    )
    assert inactive is False


# --- numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "decimal", "expected"),
    [
        ("1234", None, 1234),
        ("1234,5", None, 1234.5),
        ("1234.5", None, 1234.5),
        ("1.234,56", None, 1234.56),
        ("1,234.56", None, 1234.56),
        ("1.234.567", None, 1234567),
        ("1.234.567,8", None, 1234567.8),
        ("0,125", None, 0.125),  # a leading 0 groups no thousands
        ("12,5000", None, 12.5),
        ("1.234", ",", 1234),  # a file with decimal commas: a thousands dot
        ("1.234", ".", 1.234),
        ("12,500", ",", 12.5),
        ("12,500", ".", 12500),
        (" 7 ", None, 7),
        ("-0", None, 0),
    ],
)
def test_numbers_as_spreadsheets_write_them(text: str, decimal: str | None, expected) -> None:
    assert read_number(text, decimal) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.234", "'1.234' is ambiguous: 1234 if '.' groups thousands, 1.234 if it is the decimal"),
        ("-5", "'-5' is negative"),
        ("-1,5", "'-1,5' is negative"),
        ("nan", "'nan' is not a finite number"),
        ("NaN", "'NaN' is not a finite number"),
        ("inf", "'inf' is not a finite number"),
        ("-Infinity", "'-Infinity' is not a finite number"),
        ("9" * 400, "is too large"),
        ("cinco", "'cinco' is not a number"),
        ("1e5", "'1e5' is not a number"),
        ("1_000", "'1_000' is not a number"),
        ("1,2,3", "'1,2,3' is not a number (thousands in groups of three?)"),
        ("12.34.5", "is not a number (thousands in groups of three?)"),
        ("1.2,3.4", "is not a number (thousands in groups of three?)"),
        ("5,", "'5,' is not a number"),
        ("", "'' is not a number"),
    ],
)
def test_numbers_that_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        read_number(text, None)
    assert message in str(refused.value)


def test_which_values_show_their_decimal_mark() -> None:
    assert [decimal_evidence(v) for v in ("1,5", "2.50", "1.234,5", "1,234.5")] == [
        ",",
        ".",
        ",",
        ".",
    ]
    # A repeated mark groups thousands, so the decimal mark is the other one.
    assert [decimal_evidence(v) for v in ("1.234.567", "1,234,567")] == [",", "."]
    assert [decimal_evidence(v) for v in ("1.234", "12,500", "7", "x")] == [None] * 4


ESTOQUE = "cod_produto{sep}qtd\nA{sep}{a}\nB{sep}{b}\n"


@integration
@pytest.mark.parametrize(
    ("content", "decimal", "expected"),
    [
        # ';' lists go with decimal commas (Excel's convention): 1.234 is a thousand and more.
        (ESTOQUE.format(sep=";", a="1.234", b="7"), None, {"A": 1234, "B": 7}),
        # The file's other numbers use decimal commas ("2,5" must be quoted with ',').
        (ESTOQUE.format(sep=",", a="1.234", b='"2,5"'), None, {"A": 1234, "B": 2.5}),
        # The file's other numbers use decimal dots.
        (ESTOQUE.format(sep=",", a="1.234", b="2.5"), None, {"A": 1.234, "B": 2.5}),
        (ESTOQUE.format(sep=";", a="1.234", b="2.5"), None, {"A": 1.234, "B": 2.5}),
        # Nothing in a ','-separated file says which: the user does.
        (ESTOQUE.format(sep=",", a="1.234", b="7"), "comma", {"A": 1234, "B": 7}),
        (ESTOQUE.format(sep=",", a="1.234", b="7"), "dot", {"A": 1.234, "B": 7}),
    ],
)
def test_an_ambiguous_number_takes_the_files_decimal_mark(
    migrated_engine: Engine, tmp_path: Path, content: str, decimal, expected
) -> None:
    path = tmp_path / "estoque.csv"
    path.write_text(content)
    load(migrated_engine, {"estoque": path}, decimal=decimal)
    with migrated_engine.connect() as connection:
        assert dict(connection.execute(select(estoque.c.cod_produto, estoque.c.qtd)).all()) == (
            expected
        )


# --- bad files: one problem each, by file and line ---------------------------------------------

CARTEIRA_HEADER = "num_pedido;cod_produto;qtd_saldo;preco;data_expedicao\n"
EMPTY = (
    "the file is empty (expected a header: num_pedido, cod_produto, nome_produto, qtd_saldo, "
    "preco, data_expedicao, cnpj, cliente, ativo)"
)

BAD_CARTEIRAS: dict[str, tuple[bytes, str]] = {
    "empty": (b"", f"1: {EMPTY}"),
    "blank lines only": (b"\r\n  \r\n", f"1: {EMPTY}"),
    "header only": (
        CARTEIRA_HEADER.encode(),
        "1: a header and no rows; nothing was loaded (to empty the table on purpose, "
        "say --allow-empty)",
    ),
    "missing columns": (
        b"num_pedido;produto;qtd\nP-1;A;1\n",
        "1: missing column(s) cod_produto, qtd_saldo (the header, split by ';', has: "
        "num_pedido, produto, qtd)",
    ),
    "one column": (
        b"num_pedido\nP-1\n",
        "1: one column only ('num_pedido'): columns are separated by ';' or ','",
    ),
    "repeated column": (
        b"num_pedido;cod_produto;qtd_saldo;qtd_saldo\nP-1;A;1;2\n",
        "1: column(s) qtd_saldo appear more than once",
    ),
    "negative quantity": (
        CARTEIRA_HEADER.encode() + b"P-1;A;-5;1;\n",
        "2: qtd_saldo '-5' is negative",
    ),
    "negative price": (
        CARTEIRA_HEADER.encode() + b"P-1;A;5;-0,5;\n",
        "2: preco '-0,5' is negative",
    ),
    "nan": (
        CARTEIRA_HEADER.encode() + b"P-1;A;nan;1;\n",
        "2: qtd_saldo 'nan' is not a finite number",
    ),
    "inf": (CARTEIRA_HEADER.encode() + b"P-1;A;1;inf;\n", "2: preco 'inf' is not a finite number"),
    "a word for a number": (
        CARTEIRA_HEADER.encode() + b"P-1;A;cinco;1;\n",
        "2: qtd_saldo 'cinco' is not a number",
    ),
    "ambiguous thousands in a ',' file": (
        b"num_pedido,cod_produto,qtd_saldo\nP-1,A,1.234\n",
        "2: qtd_saldo '1.234' is ambiguous: 1234 if '.' groups thousands, 1.234 if it is the "
        "decimal mark, and the file's other numbers do not settle it: write it without the "
        "thousands mark, or say which the decimal mark is (--decimal comma or --decimal dot)",
    ),
    "both decimal marks and an ambiguous number": (
        b"num_pedido;cod_produto;qtd_saldo;preco\nP-1;A;1,5;2.5\nP-2;A;1.234;1\n",
        "3: qtd_saldo '1.234' is ambiguous",
    ),
    "impossible date": (
        CARTEIRA_HEADER.encode() + b"P-1;A;1;1;31/02/2026\n",
        "2: data_expedicao '31/02/2026' is not a date (YYYY-MM-DD or DD/MM/YYYY)",
    ),
    "date in another layout": (
        CARTEIRA_HEADER.encode() + b"P-1;A;1;1;03-05-2026\n",
        "2: data_expedicao '03-05-2026' is not a date (YYYY-MM-DD or DD/MM/YYYY)",
    ),
    "unquoted decimal comma in a ',' file": (
        b"num_pedido,cod_produto,qtd_saldo\r\nP-1,A,1,5\r\n",
        '2: 4 fields, the header has 3 (a decimal comma in a ","-separated file must be '
        'quoted: "1,5")',
    ),
    "a field short": (CARTEIRA_HEADER.encode() + b"P-1;A;1\n", "2: 3 fields, the header has 5"),
    "broken quoting": (
        CARTEIRA_HEADER.encode() + b'P-1;"A"x;1;1;\n',
        "2: cannot be read as CSV (';' expected after '\"')",
    ),
    "an order number with a space": (
        CARTEIRA_HEADER.encode() + b"P 1;A;1;1;\n",
        "2: num_pedido 'P 1' is not an order number (no spaces, at most 40)",
    ),
    "a product code too long": (
        CARTEIRA_HEADER.encode() + b"P-1;" + b"X" * 41 + b";1;1;\n",
        "2: cod_produto is longer than 40 characters",
    ),
    "an empty product code": (
        CARTEIRA_HEADER.encode() + b"P-1; ;1;1;\n",
        "2: cod_produto is empty",
    ),
    "a spreadsheet, not CSV": (
        b"PK\x03\x04\x14\x00\x06\x00",
        ": is a spreadsheet (xlsx or ods), not CSV: save it as CSV first",
    ),
    "UTF-16 without a BOM": (
        "num_pedido;cod_produto;qtd_saldo\n".encode("utf-16-le"),
        "1: holds NUL characters: not a text CSV (UTF-16 without a BOM? say --encoding)",
    ),
}


def _problem_for(path: Path, suffix: str) -> str:
    return f"{path}{suffix}" if suffix.startswith(":") else f"{path}:{suffix}"


@pytest.mark.parametrize("variant", list(BAD_CARTEIRAS))
def test_a_bad_file_is_one_problem_by_file_and_line(tmp_path: Path, variant: str) -> None:
    content, expected = BAD_CARTEIRAS[variant]
    path = tmp_path / "carteira.csv"
    path.write_bytes(content)
    problems: list[str] = []
    parse("carteira", path, problems)
    assert len(problems) == 1
    assert problems[0].startswith(_problem_for(path, expected))


def test_a_missing_path_or_a_folder_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    problems: list[str] = []
    parse("estoque", tmp_path / "nowhere.csv", problems)
    parse("estoque", tmp_path, problems)
    assert problems == [
        f"{tmp_path / 'nowhere.csv'}: no such file",
        f"{tmp_path}: is a folder, not a CSV file",
    ]


def test_a_repeated_product_in_the_stock_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "estoque.csv"
    path.write_text("cod_produto;qtd\nA;1\nB;2\nA;3\n")
    problems: list[str] = []
    parse("estoque", path, problems)
    assert problems == [f"{path}:4: cod_produto 'A' again (first on line 2)"]


def test_the_encoding_can_be_forced(tmp_path: Path) -> None:
    path = tmp_path / "estoque.csv"
    path.write_bytes("cod_produto;qtd\nAÇÚCAR;1\n".encode("cp1252"))
    problems: list[str] = []
    assert parse("estoque", path, problems, encoding="latin-1") == [
        {"cod_produto": "AÇÚCAR", "qtd": 1.0}
    ]
    parse("estoque", path, problems, encoding="utf-8")
    parse("estoque", path, problems, encoding="klingon")
    assert problems == [
        f"{path}:2: is not valid utf-8 (byte 0xc7); say which encoding it has (--encoding)",
        f"{path}: unknown encoding 'klingon'",
    ]


def test_a_file_mixing_utf8_and_latin1_is_refused_not_garbled(tmp_path: Path) -> None:
    path = tmp_path / "estoque.csv"
    path.write_bytes("cod_produto;qtd\nCAFÉ;1\n".encode() + "AÇÚCAR;2\n".encode("latin-1"))
    problems: list[str] = []
    parse("estoque", path, problems)
    assert problems == [
        f"{path}:3: mixes UTF-8 with another encoding (byte 0xc7 is not UTF-8): fix that line, "
        "or say which encoding the file has (--encoding)"
    ]


def test_an_unterminated_quote_is_reported_where_its_record_starts(tmp_path: Path) -> None:
    path = tmp_path / "estoque.csv"
    path.write_text('cod_produto;qtd\nA;1\n"B;2\nC;3\n')
    problems: list[str] = []
    parse("estoque", path, problems)
    assert problems == [f"{path}:3: cannot be read as CSV (unexpected end of data)"]


def test_a_line_number_counts_the_lines_of_a_quoted_field(tmp_path: Path) -> None:
    path = tmp_path / "carteira.csv"
    path.write_text(
        'num_pedido;cod_produto;nome_produto;qtd_saldo\r\nP-1;A;"two\r\nlines";1\r\nP-2;A;x;dez\r\n'
    )
    problems: list[str] = []
    parse("carteira", path, problems)
    assert problems == [f"{path}:4: qtd_saldo 'dez' is not a number"]


@integration
def test_bad_files_change_nothing_not_even_the_good_ones_beside_them(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    seed_demo(migrated_engine, DemoSpec(orders=20, products=10, seed=1))
    before = snapshot(migrated_engine)
    good_stock = tmp_path / "estoque.csv"
    good_stock.write_text("cod_produto;qtd\nA;1\n")
    for variant, (content, expected) in BAD_CARTEIRAS.items():
        carteira = tmp_path / f"{variant}.csv"
        carteira.write_bytes(content)
        with pytest.raises(CsvRejected) as rejected:
            load(migrated_engine, {"carteira": carteira, "estoque": good_stock})
        assert len(rejected.value.problems) == 1, variant
        assert rejected.value.problems[0].startswith(_problem_for(carteira, expected)), variant
        assert snapshot(migrated_engine) == before, variant
    with pytest.raises(CsvRejected):
        load(migrated_engine, {"carteira": tmp_path / "nowhere.csv", "estoque": good_stock})
    assert snapshot(migrated_engine) == before


@integration
def test_every_bad_row_is_reported_and_nothing_is_loaded(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    seed_demo(migrated_engine, DemoSpec(orders=20, products=10, seed=1))
    before = (count(migrated_engine, carteira_itens), count(migrated_engine, estoque))
    carteira = tmp_path / "carteira.csv"
    carteira.write_text(
        "num_pedido,cod_produto,qtd_saldo,data_expedicao\n"
        "P-1,A,5,2026-03-05\n"
        "P-2,A,cinco,2026-03-05\n"
        "P 3,A,1,31/02/2026\n"
    )
    stock = tmp_path / "estoque.csv"
    stock.write_text("produto,qtd\nA,1\n")
    with pytest.raises(CsvRejected) as rejected:
        load(migrated_engine, {"carteira": carteira, "estoque": stock})
    assert rejected.value.problems == [
        f"{carteira}:3: qtd_saldo 'cinco' is not a number",
        f"{carteira}:4: num_pedido 'P 3' is not an order number (no spaces, at most 40)",
        f"{carteira}:4: data_expedicao '31/02/2026' is not a date (YYYY-MM-DD or DD/MM/YYYY)",
        f"{stock}:1: missing column(s) cod_produto (the header, split by ',', has: produto, qtd)",
    ]
    assert (count(migrated_engine, carteira_itens), count(migrated_engine, estoque)) == before
    assert count(migrated_engine, programacao_producao) > 0  # untouched: not among the files


@integration
def test_a_header_only_file_empties_its_table_when_allowed(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    seed_demo(migrated_engine, DemoSpec(orders=20, products=10, seed=1))
    production = tmp_path / "producao.csv"
    production.write_text("cod_produto;data;qtd\r\n")
    with pytest.raises(CsvRejected):
        load(migrated_engine, {"producao": production})
    assert count(migrated_engine, programacao_producao) > 0
    assert load(migrated_engine, {"producao": production}, allow_empty=True) == {"producao": 0}
    assert count(migrated_engine, programacao_producao) == 0
