"""esteira.js and the operator page in a real headless Chromium, against a running stack:
redis-server, the gateway, a ruptura worker, a scraper worker and the demo portal."""

import os
import time

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from esteira_portal.records import FIRST_OS

pytestmark = pytest.mark.integration
LEVELS = ("CRITICA", "ALTA", "MEDIA", "BAIXA")


def _badges(driver) -> list[str]:
    return [
        b.get_attribute("data-status") or ""
        for b in driver.find_elements(By.CSS_SELECTOR, "#pedidos [data-ruptura-badge]")
    ]


def _active(driver) -> str:
    return driver.execute_script(
        "const a = document.activeElement; return a.id || a.className || a.tagName;"
    )


def _chart_values(driver, chart: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for rect in driver.find_elements(By.CSS_SELECTOR, f"#{chart} rect[data-series]"):
        name = rect.get_attribute("data-series") or ""
        values[name] = values.get(name, 0) + int(rect.get_attribute("data-value") or 0)
    return values


def _low_contrast(page, driver) -> list[dict]:
    return [t for t in page.contrast(driver) if t["ratio"] < 4.5]


def test_the_operator_page_analyses_the_carteira_live(site, chromium, page) -> None:
    driver = chromium.driver
    driver.set_window_size(1400, 1000)
    driver.get(f"{site.url}/ui")
    assert driver.find_elements(By.CLASS_NAME, "esteira-progress") == []  # nothing until asked
    page.until(driver, lambda d: len(_badges(d)) == 40, message="orders never listed")
    page.until(
        driver,
        lambda d: (
            "ruptura" in d.find_element(By.ID, "queues").text
            and d.find_element(By.CSS_SELECTOR, "#queues tbody tr td:last-child").text == "1"
        ),
        message="the queues never showed the ruptura worker",
    )
    driver.find_element(By.ID, "analisar").click()
    bar = page.until(
        driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".esteira-progress [role=progressbar]")
    )[0]
    page.until(
        driver, lambda d: bar.get_attribute("aria-valuenow") == "100", message="progress stuck"
    )
    assert all(status in LEVELS for status in _badges(driver))
    assert driver.find_element(By.CLASS_NAME, "esteira-workers").text == "Workers Ativos (1)"
    assert "40 pedidos analisados" in driver.find_element(By.ID, "analysis-status").text

    # The criticidade chart counts the badges; the throughput chart the orders just analysed.
    page.until(driver, lambda d: sum(_chart_values(d, "chart-criticidade").values()) == 40)
    levels = _chart_values(driver, "chart-criticidade")
    assert levels == {level: _badges(driver).count(level) for level in LEVELS}
    assert _chart_values(driver, "chart-throughput").get("orders") == 40
    page.until(  # the queue-depth chart has sampled both queues more than once
        driver,
        lambda d: (
            all(
                int(p.get_attribute("data-points") or 0) >= 2
                for p in d.find_elements(By.CSS_SELECTOR, "#chart-depth path[data-series]")
            )
            and len(d.find_elements(By.CSS_SELECTOR, "#chart-depth path[data-series]")) == 2
        ),
    )

    # Every badge and every text is readable (WCAG AA).
    texts = page.contrast(driver)
    badges = [t for t in texts if t["badge"]]
    shown = {level for level, count in levels.items() if count}
    assert len(badges) == 41 and {b["status"] for b in badges} >= shown, badges
    assert _low_contrast(page, driver) == []

    # Keyboard only: the OS lookup opens a modal that keeps the focus and gives it back.
    field = driver.find_element(By.ID, "os-numero")
    field.send_keys(str(FIRST_OS + 3), Keys.ENTER)
    dialog = page.until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[role=dialog]"))[0]
    assert _active(driver) == "esteira-modal-close"
    for keys in (Keys.TAB, Keys.TAB, Keys.SHIFT + Keys.TAB, Keys.TAB):
        driver.switch_to.active_element.send_keys(keys)
        assert driver.execute_script(
            "return arguments[0].contains(document.activeElement)", dialog
        ), "the focus left the dialog"
    page.until(
        driver,
        lambda d: dialog.get_attribute("data-status") == "success",
        90,
        "the OS modal never reached success",
    )
    assert "Cliente: " in dialog.text and "(100%)" in dialog.text
    assert _low_contrast(page, driver) == []
    page.until(driver, lambda d: _chart_values(d, "chart-outcomes").get("success") == 1)
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    page.until(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "[role=dialog]"))
    assert _active(driver) == "os-numero"
    page.until(driver, lambda d: str(FIRST_OS + 3) in d.find_element(By.ID, "tasks").text)
    if os.environ.get("ESTEIRA_UPDATE_SCREENSHOT"):
        page.docs.mkdir(exist_ok=True)
        driver.set_window_size(1400, 1250)
        driver.execute_script("document.activeElement.blur()")
        driver.save_screenshot(str(page.docs / "ui.png"))
    assert page.severe(driver) == []


def test_at_phone_width_nothing_scrolls_sideways_and_the_modal_fits(site, chromium, page) -> None:
    driver = chromium.driver
    page.set_viewport(driver, 375, 740, mobile=True)
    driver.get(f"{site.url}/ui")
    page.until(driver, lambda d: len(_badges(d)) == 40, message="orders never listed")
    page.until(driver, lambda d: "scraper" in d.find_element(By.ID, "queues").text)
    driver.find_element(By.ID, "analisar").click()
    page.until(driver, lambda d: all(s in LEVELS for s in _badges(d)), 60, "not every result came")
    assert driver.execute_script("return window.innerWidth") == 375
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 375
    assert _low_contrast(page, driver) == []

    driver.find_element(By.ID, "os-numero").send_keys(str(FIRST_OS + 11), Keys.ENTER)
    dialog = page.until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[role=dialog]"))[0]
    page.until(driver, lambda d: dialog.get_attribute("data-status") == "success", 90)
    box = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.left, r.top, r.right, r.bottom, innerWidth, innerHeight];",
        dialog,
    )
    left, top, right, bottom, width, height = box
    assert left >= 0 and top >= 0 and right <= width and bottom <= height, box
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 375
    if os.environ.get("ESTEIRA_UPDATE_SCREENSHOT"):
        page.docs.mkdir(exist_ok=True)
        page.set_viewport(driver, 375, 1500, mobile=True)  # the top of the page, lookup open
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.3)
        driver.save_screenshot(str(page.docs / "ui-phone.png"))
    assert page.severe(driver) == []


def test_the_seed_addon_switches_on_with_its_meta_tag(site, chromium, page) -> None:
    driver = chromium.driver
    driver.get(f"{site.url}/static/addon-demo.html")
    bar = page.until(
        driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".esteira-progress [role=progressbar]")
    )[0]
    page.until(
        driver, lambda d: bar.get_attribute("aria-valuenow") == "100", message="progress stuck"
    )
    statuses = [
        b.get_attribute("data-status")
        for b in driver.find_elements(By.CSS_SELECTOR, "[data-ruptura-badge]")
    ]
    assert len(statuses) == 30 and None not in statuses
    assert driver.find_element(By.CLASS_NAME, "esteira-workers").text == "Workers Ativos (1)"
    badges = [t for t in page.contrast(driver) if t["badge"]]
    assert len(badges) == 31 and all(b["ratio"] >= 4.5 for b in badges), badges
    assert _low_contrast(page, driver) == []
    assert page.severe(driver) == []


@pytest.mark.parametrize("site", [("scraper",)], indirect=True)
def test_with_redis_killed_the_addon_falls_back_and_shows_every_result(
    site, chromium, page
) -> None:
    driver = chromium.driver
    driver.get(f"{site.url}/ui")
    page.until(driver, lambda d: len(_badges(d)) == 40, message="orders never listed")
    driver.find_element(By.ID, "analisar").click()  # no ruptura worker: the jobs wait
    page.until(driver, lambda d: d.find_elements(By.CLASS_NAME, "esteira-progress"))
    time.sleep(0.5)
    site.redis.kill()
    page.until(
        driver,
        lambda d: (
            d.find_element(By.TAG_NAME, "body").get_attribute("data-ruptura-fallback") == "true"
        ),
        30,
        "the add-on never fell back",
    )
    page.until(
        driver,
        lambda d: all(s in LEVELS for s in _badges(d)),
        60,
        "not every order got its result",
    )
    assert "endpoint síncrono" in driver.find_element(By.ID, "analysis-status").text
    notice = page.until(
        driver,
        lambda d: (
            d.find_element(By.ID, "notice").is_displayed() and d.find_element(By.ID, "notice").text
        ),
    )
    assert "Redis fora do ar" in notice
    assert "Redis indisponível" in driver.find_element(By.ID, "tasks").text
    assert "Redis fora do ar" in driver.find_element(By.ID, "queue-notes").text
    assert _low_contrast(page, driver) == []
    assert page.severe(driver, allowed=("503", "Failed to load resource")) == []
    assert httpx.get(f"{site.url}/readyz").json()["status"] == "degraded"
