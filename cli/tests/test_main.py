"""The esteira command as a user runs it: the installed `esteira` script, in a folder of the
user's, against the database ESTEIRA_DATABASE_URL names."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url, select

from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_ruptura.data import carteira_version
from esteira_ruptura.tables import carteira_itens, estoque

pytestmark = pytest.mark.integration

# The console script the workspace installs beside this interpreter: what a user types.
ESTEIRA = Path(sys.executable).with_name("esteira")


def esteira(
    *args: str, database_url: str | None, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("ESTEIRA_DATABASE")
    }
    environment |= {"ESTEIRA_LOG_FORMAT": "text", **env}
    if database_url is not None:
        environment["ESTEIRA_DATABASE_URL"] = database_url
    return subprocess.run(
        [str(ESTEIRA), *args],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def tables(engine: Engine) -> tuple[list[tuple], list[tuple], int]:
    with engine.connect() as connection:
        lines = connection.execute(
            select(carteira_itens).order_by(carteira_itens.c.num_pedido, carteira_itens.c.id)
        ).all()
        stock = connection.execute(select(estoque).order_by(estoque.c.cod_produto)).all()
        return [tuple(r) for r in lines], [tuple(r) for r in stock], carteira_version(connection)


def test_load_csv_run_from_another_folder_loads_the_configured_database(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    """Excel's Brazilian export (Windows-1252, ';', CRLF) loads; then a bad file beside a good
    one is reported by file and line, exits 1 and leaves every table as it was."""
    url = migrated_engine.url.render_as_string(hide_password=False)
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "carteira.csv").write_bytes(
        "num_pedido;cod_produto;nome_produto;qtd_saldo;preco;data_expedicao\r\n"
        "P-1;A;AÇÚCAR;1.234;2,50;05/03/2026\r\n"
        'P-2;B;Café;"1,5";10;2026-03-06\r\n'.encode("cp1252")
    )
    (folder / "estoque.csv").write_bytes(b"cod_produto;qtd\r\nA;100\r\nB;0,5\r\n")
    loaded = esteira(
        "load-csv", "--carteira", "carteira.csv", "--estoque", "estoque.csv",
        database_url=url, cwd=folder,
    )  # fmt: skip
    assert (loaded.returncode, loaded.stderr) == (0, "")
    assert loaded.stdout == "loaded: carteira=2, estoque=2\n"
    before = tables(migrated_engine)
    lines, stock, version = before
    assert [(r[1], r[3], r[4], r[5]) for r in lines] == [  # num_pedido, nome, qtd_saldo, preco
        ("P-1", "AÇÚCAR", 1234.0, 2.5),
        ("P-2", "Café", 1.5, 10.0),
    ]
    assert stock == [("A", 100.0), ("B", 0.5)] and version == 1

    (folder / "novo.csv").write_bytes(
        "num_pedido;cod_produto;nome_produto;qtd_saldo\r\n"
        "P-3;A;AÇÚCAR;nan\r\n"
        "P-4;A;AÇÚCAR;-2\r\n".encode("latin-1")
    )
    (folder / "estoque2.csv").write_text("cod_produto;qtd\nA;1\n")
    refused = esteira(
        "load-csv", "--carteira", "novo.csv", "--estoque", "estoque2.csv",
        database_url=url, cwd=folder,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr == (
        "novo.csv:2: qtd_saldo 'nan' is not a finite number\n"
        "novo.csv:3: qtd_saldo '-2' is negative\n"
        "esteira load-csv: 2 problem(s); nothing was loaded\n"
    )
    assert refused.stdout == ""
    assert tables(migrated_engine) == before
    assert sorted(p.name for p in folder.iterdir()) == [
        "carteira.csv",
        "estoque.csv",
        "estoque2.csv",
        "novo.csv",
    ]  # nothing made in the user's folder (no var/esteira.db)


def test_load_csv_says_what_is_wrong_with_a_path_without_a_traceback(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    url = migrated_engine.url.render_as_string(hide_password=False)
    refused = esteira(
        "load-csv", "--carteira", "nowhere.csv", "--estoque", ".", database_url=url, cwd=tmp_path
    )
    assert refused.returncode == 1
    assert refused.stderr == (
        "nowhere.csv: no such file\n"
        ".: is a folder, not a CSV file\n"
        "esteira load-csv: 2 problem(s); nothing was loaded\n"
    )


def test_db_commands_refuse_a_database_that_does_not_exist_and_make_none(tmp_path: Path) -> None:
    """The default database is var/esteira.db under the current folder: from a folder without
    one, the commands say where they looked instead of making an empty database there."""
    (tmp_path / "estoque.csv").write_text("cod_produto;qtd\nA;1\n")
    expected = (
        f"there is no database at {tmp_path / 'var' / 'esteira.db'} "
        "(ESTEIRA_DATABASE_URL=sqlite:///var/esteira.db, a path taken from the current "
        "folder); run `esteira db upgrade` with the same ESTEIRA_DATABASE_URL first, or point "
        "ESTEIRA_DATABASE_URL at the database to use\n"
    )
    for command in (["load-csv", "--estoque", "estoque.csv"], ["seed-demo"]):
        refused = esteira(*command, database_url=None, cwd=tmp_path)
        assert refused.returncode == 1
        assert refused.stderr == f"esteira {command[0]}: {expected}"
    assert [p.name for p in tmp_path.iterdir()] == ["estoque.csv"]
    absent = tmp_path / "elsewhere" / "esteira.db"
    refused = esteira("seed-demo", database_url=f"sqlite:///{absent}", cwd=tmp_path)
    assert refused.stderr.startswith(
        f"esteira seed-demo: there is no database at {absent} (ESTEIRA_DATABASE_URL=sqlite:///"
        f"{absent}); run `esteira db upgrade`"
    )
    assert not absent.parent.exists()


def test_db_commands_refuse_an_unmigrated_database_naming_it_without_its_password(
    database_url: str, tmp_path: Path
) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(str(url.database)) as connection:  # a database, not Esteira's
            connection.execute("CREATE TABLE other (x INTEGER)")
    else:  # the test server trusts every login: the password is only there to be hidden
        url = url.set(password="s3cr3t-pw")
    (tmp_path / "estoque.csv").write_text("cod_produto;qtd\nA;1\n")
    refused = esteira(
        "load-csv",
        "--estoque",
        "estoque.csv",
        database_url=url.render_as_string(hide_password=False),
        cwd=tmp_path,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"esteira load-csv: the database {url.render_as_string(hide_password=True)} has not "
        "been migrated (missing tables: carteira_itens, carteira_versao, clientes, "
    )
    assert "s3cr3t-pw" not in refused.stderr and "Traceback" not in refused.stderr


def test_db_commands_say_when_the_database_cannot_be_reached(tmp_path: Path) -> None:
    refused = esteira(
        "seed-demo",
        database_url="postgresql+psycopg://esteira:s3cr3t-pw@127.0.0.1:1/esteira?connect_timeout=2",
        cwd=tmp_path,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "esteira seed-demo: cannot open the database "
        "postgresql+psycopg://esteira:***@127.0.0.1:1/esteira?connect_timeout=2: "
    )
    assert "s3cr3t-pw" not in refused.stderr and "Traceback" not in refused.stderr


def test_load_csv_reports_bad_rows_and_loads_good_files(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(create_db_engine(url).url)
    bad = tmp_path / "bad.csv"
    bad.write_text("cod_produto,qtd\nA,muito\n")
    refused = esteira("load-csv", "--estoque", str(bad), database_url=url)
    assert refused.returncode == 1
    assert "bad.csv:2: qtd 'muito' is not a number" in refused.stderr
    good = tmp_path / "good.csv"
    good.write_text("cod_produto;qtd\nA;1,5\n")
    loaded = esteira("load-csv", "--estoque", str(good), database_url=url)
    assert loaded.returncode == 0 and "estoque=1" in loaded.stdout
    assert esteira("load-csv", database_url=url).returncode == 2


def test_load_csv_warns_when_ruptura_reads_a_source_profile_instead(tmp_path) -> None:
    """An operator loading a CSV while the workers read a team's database is told that the load
    changes no answer; the load itself still happens."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(create_db_engine(url).url)
    stock = tmp_path / "estoque.csv"
    stock.write_text("cod_produto;qtd\nA;1\n")
    plain = esteira("load-csv", "--estoque", str(stock), database_url=url)
    assert (plain.returncode, plain.stderr) == (0, "")
    profiled = esteira(
        "load-csv", "--estoque", str(stock), database_url=url,
        ESTEIRA_RUPTURA_SOURCE_URL="postgresql+psycopg://leitor@erp.example/erp",
        ESTEIRA_RUPTURA_SOURCE_PROFILE="legado.yaml",
    )  # fmt: skip
    assert profiled.returncode == 0 and "estoque=1" in profiled.stdout
    assert profiled.stderr == (
        "esteira load-csv: warning: ESTEIRA_RUPTURA_SOURCE_PROFILE is set (legado.yaml): "
        "ruptura reads the carteira from that database, not from the tables loaded here\n"
    )


def test_seed_demo_refuses_to_overwrite_without_replace(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert esteira("db", "upgrade", database_url=url).returncode == 0
    assert (
        esteira("seed-demo", "--orders", "30", "--products", "10", database_url=url).returncode == 0
    )
    again = esteira("seed-demo", "--orders", "30", database_url=url)
    assert again.returncode == 1 and "--replace" in again.stderr
    assert esteira("seed-demo", "--orders", "30", "--if-empty", database_url=url).returncode == 0
