"""esteira.js and the operator page in a real headless Chromium, against a running stack:
redis-server, the gateway, a ruptura worker, a scraper worker and the demo portal."""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By

from esteira_cli.processes import free_port
from esteira_portal.records import FIRST_OS
from esteira_testing.components import seeded_database

pytestmark = pytest.mark.integration
SCREENSHOT = Path(__file__).parents[2] / "docs" / "ui.png"


@dataclass
class Site:
    url: str
    redis: object


@pytest.fixture
def site(own_redis_server, tmp_path, esteira_processes, request) -> Site:
    database_url = seeded_database(f"sqlite:///{tmp_path / 'ui.db'}", orders=300, products=60)
    portal_port, api_port = free_port(), free_port()
    esteira_processes("portal", ["portal", "--port", str(portal_port)], {}, port=portal_port)
    env = {
        "ESTEIRA_REDIS_URL": own_redis_server.url,
        "ESTEIRA_DATABASE_URL": database_url,
        "ESTEIRA_PORTAL_URL": f"http://127.0.0.1:{portal_port}",
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "ESTEIRA_AUTH_DISABLED": "true",
    }
    pools = getattr(request, "param", ("ruptura", "scraper"))
    for pool in pools:
        port = free_port()
        esteira_processes(
            f"{pool}-worker",
            ["worker", pool],
            {**env, "ESTEIRA_METRICS_PORT": str(port)},
            port=port,
        )
    esteira_processes("api", ["api", "--port", str(api_port)], env, port=api_port)
    return Site(url=f"http://127.0.0.1:{api_port}", redis=own_redis_server)


def _until(driver, condition, timeout: float = 30, message: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = condition(driver)
        if value:
            return value
        assert time.monotonic() < deadline, message or "condition never held"
        time.sleep(0.1)


def _severe(driver, allowed: tuple[str, ...] = ()) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not any(a in entry["message"] for a in allowed)
    ]


def _badges(driver) -> list[str]:
    return [
        b.get_attribute("data-status") or ""
        for b in driver.find_elements(By.CSS_SELECTOR, "#pedidos [data-ruptura-badge]")
    ]


def test_the_operator_page_analyses_the_carteira_live(site, chromium) -> None:
    driver = chromium.driver
    driver.get(f"{site.url}/ui")
    assert driver.find_elements(By.CLASS_NAME, "esteira-progress") == []  # nothing until asked
    _until(driver, lambda d: len(_badges(d)) == 40, message="orders never listed")
    _until(
        driver,
        lambda d: (
            "ruptura" in d.find_element(By.ID, "queues").text
            and d.find_element(By.CSS_SELECTOR, "#queues tbody tr td:last-child").text == "1"
        ),
        message="the queues never showed the ruptura worker",
    )
    driver.find_element(By.ID, "analisar").click()
    bar = _until(
        driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".esteira-progress [role=progressbar]")
    )[0]
    _until(driver, lambda d: bar.get_attribute("aria-valuenow") == "100", message="progress stuck")
    assert all(status in ("CRITICA", "ALTA", "MEDIA", "BAIXA") for status in _badges(driver))
    assert driver.find_element(By.CLASS_NAME, "esteira-workers").text == "Workers Ativos (1)"
    assert "40 pedidos analisados" in driver.find_element(By.ID, "analysis-status").text

    driver.find_element(By.ID, "os-numero").send_keys(str(FIRST_OS + 3))
    driver.find_element(By.CSS_SELECTOR, "#os-form button").click()
    dialog = _until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[role=dialog]"))[0]
    _until(
        driver,
        lambda d: dialog.get_attribute("data-status") == "success",
        90,
        "the OS modal never reached success",
    )
    assert "Cliente: " in dialog.text and "(100%)" in dialog.text
    if os.environ.get("ESTEIRA_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        driver.set_window_size(1400, 1000)
        driver.save_screenshot(str(SCREENSHOT))
    dialog.find_element(By.CLASS_NAME, "esteira-modal-close").click()
    _until(driver, lambda d: str(FIRST_OS + 3) in d.find_element(By.ID, "tasks").text)
    assert _severe(driver) == []


def test_the_seed_addon_switches_on_with_its_meta_tag(site, chromium) -> None:
    driver = chromium.driver
    driver.get(f"{site.url}/static/addon-demo.html")
    bar = _until(
        driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".esteira-progress [role=progressbar]")
    )[0]
    _until(driver, lambda d: bar.get_attribute("aria-valuenow") == "100", message="progress stuck")
    statuses = [
        b.get_attribute("data-status")
        for b in driver.find_elements(By.CSS_SELECTOR, "[data-ruptura-badge]")
    ]
    assert len(statuses) == 30 and None not in statuses
    assert driver.find_element(By.CLASS_NAME, "esteira-workers").text == "Workers Ativos (1)"
    assert _severe(driver) == []


@pytest.mark.parametrize("site", [("scraper",)], indirect=True)
def test_with_redis_killed_the_addon_falls_back_and_shows_every_result(site, chromium) -> None:
    driver = chromium.driver
    driver.get(f"{site.url}/ui")
    _until(driver, lambda d: len(_badges(d)) == 40, message="orders never listed")
    driver.find_element(By.ID, "analisar").click()  # no ruptura worker: the jobs wait
    _until(driver, lambda d: d.find_elements(By.CLASS_NAME, "esteira-progress"))
    time.sleep(0.5)
    site.redis.kill()
    _until(
        driver,
        lambda d: (
            d.find_element(By.TAG_NAME, "body").get_attribute("data-ruptura-fallback") == "true"
        ),
        30,
        "the add-on never fell back",
    )
    _until(
        driver,
        lambda d: all(s in ("CRITICA", "ALTA", "MEDIA", "BAIXA") for s in _badges(d)),
        60,
        "not every order got its result",
    )
    assert "endpoint síncrono" in driver.find_element(By.ID, "analysis-status").text
    assert _severe(driver, allowed=("503", "Failed to load resource")) == []
    assert httpx.get(f"{site.url}/readyz").json()["status"] == "degraded"
