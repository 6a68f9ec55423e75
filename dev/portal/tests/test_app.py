"""The demo portal over HTTP: login, sessions, lookups and its fault switches."""

import pytest
from fastapi.testclient import TestClient

from esteira_portal import records
from esteira_portal.app import create_app
from esteira_portal.settings import PortalSettings

EXISTING = str(records.FIRST_OS + 10)


@pytest.fixture
def portal() -> TestClient:
    settings = PortalSettings(username="ana", password="s3nha", records=100)
    return TestClient(create_app(settings))


def _login(portal: TestClient) -> None:
    response = portal.post(
        "/login", data={"username": "ana", "password": "s3nha"}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/app"


def test_the_page_holds_no_data_without_javascript(portal) -> None:
    _login(portal)
    page = portal.get("/app").text
    assert 'id="root"' in page and "CLIENTE" not in page


def test_lookups_need_a_login(portal) -> None:
    assert portal.get(f"/api/os/{EXISTING}").status_code == 401
    assert portal.get("/app", follow_redirects=False).headers["location"] == "/login?expired=1"


def test_wrong_password_is_refused(portal) -> None:
    response = portal.post("/login", data={"username": "ana", "password": "nope"})
    assert response.status_code == 401 and "inválidos" in response.text
    assert portal.get("/admin/stats").json()["failed_logins"] == 1


def test_an_existing_os_has_every_label_and_a_missing_one_is_not_found(portal) -> None:
    _login(portal)
    fields = dict(portal.get(f"/api/os/{EXISTING}").json()["campos"])
    for label in (
        "OS",
        "CLIENTE",
        "CNPJ",
        "TIPO DO EQUIPAMENTO",
        "DESCRIÇÃO",
        "FABRICANTE",
        "MODELO",
        "NUMERO DE SERIE",
        "MUNICIPIO",
        "STATUS DA OS",
    ):
        assert fields[label]
    assert fields["OS"] == EXISTING
    missing = portal.get(f"/api/os/{records.FIRST_OS + 100}")
    assert missing.status_code == 404 and "não encontrada" in missing.json()["erro"]


def test_records_are_deterministic_and_a_cliente_keeps_its_cnpj() -> None:
    assert records.find(EXISTING, 100) == records.find(EXISTING, 100)
    first = dict(records.find(str(records.FIRST_OS), 100) or [])
    same_cliente = dict(records.find(str(records.FIRST_OS + 8), 100) or [])
    assert first["CLIENTE"] == same_cliente["CLIENTE"] and first["CNPJ"] == same_cliente["CNPJ"]


def test_switches_inject_errors_and_expire_sessions(portal) -> None:
    _login(portal)
    switches = portal.get("/admin/switches").json()
    portal.put("/admin/switches", json={**switches, "error_rate": 1.0})
    assert portal.get(f"/api/os/{EXISTING}").status_code == 500
    portal.put("/admin/switches", json={**switches, "error_rate": 0.0})
    assert portal.post("/admin/expire-sessions").json() == {"expired": 1}
    assert portal.get(f"/api/os/{EXISTING}").status_code == 401


def test_bad_switches_are_refused(portal) -> None:
    assert portal.put("/admin/switches", json={"error_rate": 2}).status_code == 422
