"""The esteira command as a user runs it."""

import os
import subprocess
import sys

import pytest

from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade

pytestmark = pytest.mark.integration


def esteira(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ESTEIRA_DATABASE_URL": database_url, "ESTEIRA_LOG_FORMAT": "text"}
    return subprocess.run(
        [sys.executable, "-m", "esteira_cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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


def test_seed_demo_refuses_to_overwrite_without_replace(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert esteira("db", "upgrade", database_url=url).returncode == 0
    assert (
        esteira("seed-demo", "--orders", "30", "--products", "10", database_url=url).returncode == 0
    )
    again = esteira("seed-demo", "--orders", "30", database_url=url)
    assert again.returncode == 1 and "--replace" in again.stderr
    assert esteira("seed-demo", "--orders", "30", "--if-empty", database_url=url).returncode == 0
