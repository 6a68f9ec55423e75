"""Recording scraped OS on SQLite and PostgreSQL."""

import pytest
from sqlalchemy import func, select

from esteira_scraping.flow import ScrapedOS
from esteira_scraping.persistence import cnpj_digits, find_os, normalize_name, save_os
from esteira_scraping.tables import clientes, equipamentos, ordens_servico

pytestmark = pytest.mark.integration


def scraped(numero: str, **fields: str) -> ScrapedOS:
    base = {
        "numero_os": numero,
        "cliente": "Clínica São Camilo",
        "cnpj": "12.345.678/0001-90",
        "tipo_equipamento": "Autoclave",
        "descricao": "Autoclave 21L",
        "fabricante": "Cristófoli",
        "modelo": "Vitale 21",
        "numero_serie": "CRI-1",
        "municipio": "Londrina",
        "status_os": "ABERTA",
    }
    base.update(fields)
    raw = [(label.upper(), value) for label, value in base.items()] + [("EXTRA", "kept")]
    return ScrapedOS(numero_os=numero, fields=base, raw=raw)


def count(engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_cliente_by_cnpj_equipamento_by_serial_os_by_number(migrated_engine) -> None:
    first = save_os(migrated_engine, scraped("1"))
    second = save_os(migrated_engine, scraped("2", cliente="CLINICA SAO CAMILO LTDA"))
    again = save_os(migrated_engine, scraped("1", status_os="CONCLUÍDA"))
    assert first.cliente_id == second.cliente_id == again.cliente_id
    assert first.equipamento_id == second.equipamento_id
    assert first.os_id == again.os_id
    assert (
        count(migrated_engine, clientes),
        count(migrated_engine, equipamentos),
        count(migrated_engine, ordens_servico),
    ) == (1, 1, 2)
    recorded = find_os(migrated_engine, "1")
    assert recorded is not None
    assert recorded["status_os"] == "CONCLUÍDA" and recorded["cnpj"] == "12345678000190"
    assert (
        recorded["campos"]["EXTRA"] == "kept"
        and recorded["cliente"] == "Clínica São Camilo"  # the latest scrape wins
    )


def test_without_cnpj_or_serial_the_names_decide(migrated_engine) -> None:
    a = save_os(
        migrated_engine, scraped("10", cnpj="n/d", numero_serie="", cliente="Hospital  Ipê")
    )
    b = save_os(migrated_engine, scraped("11", cnpj="", numero_serie="", cliente="HOSPITAL IPE"))
    c = save_os(
        migrated_engine, scraped("12", cnpj="", numero_serie="", cliente="Outro", modelo="X")
    )
    assert a.cliente_id == b.cliente_id != c.cliente_id
    assert a.equipamento_id == b.equipamento_id != c.equipamento_id
    assert find_os(migrated_engine, "404") is None


def test_normalization_helpers() -> None:
    assert normalize_name("  Clínica  São   Camilo ") == "CLINICA SAO CAMILO"
    assert cnpj_digits("12.345.678/0001-90") == "12345678000190"
    assert cnpj_digits("123") is None and cnpj_digits(None) is None
