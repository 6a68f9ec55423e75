"""The demo portal driven by a real headless Chromium, as the scraper will drive it."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from esteira_portal import records
from esteira_testing.plugin import DEMO_PORTAL_PASSWORD, DEMO_PORTAL_USERNAME

pytestmark = pytest.mark.integration


def test_login_then_search_renders_the_details_card(chromium, demo_portal: str) -> None:
    driver = chromium.driver
    wait = WebDriverWait(driver, 15)
    driver.get(f"{demo_portal}/")
    driver.find_element(By.ID, "login_username").send_keys(DEMO_PORTAL_USERNAME)
    driver.find_element(By.ID, "login_password").send_keys(DEMO_PORTAL_PASSWORD)
    driver.find_element(By.XPATH, "//button[normalize-space()='Entrar']").click()

    search = wait.until(expected_conditions.presence_of_element_located((By.ID, "numero_os")))
    search.send_keys(str(records.FIRST_OS))
    driver.find_element(By.ID, "buscar").click()
    card = wait.until(expected_conditions.presence_of_element_located((By.ID, "detalhes")))
    lines = [p.text for p in card.find_elements(By.TAG_NAME, "p")]
    assert f"OS: {records.FIRST_OS}" in lines
    assert any(line.startswith("CLIENTE: ") for line in lines)

    search.clear()
    search.send_keys("999")
    driver.find_element(By.ID, "buscar").click()
    message = wait.until(
        expected_conditions.presence_of_element_located((By.CLASS_NAME, "nao-encontrada"))
    )
    assert message.text == "OS 999 não encontrada"
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert [e for e in errors if "/api/os/999" not in e["message"]] == []
