"""The scrape of one OS in a logged-in browser: open the search page (logging in again when the
portal asks), search, wait for the answer, read the details card. Blocking Selenium calls: it
runs in a worker thread. Every wait is bounded by the job's soft deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from selenium.common.exceptions import (
    JavascriptException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from esteira_core import metrics
from esteira_scraping.errors import (
    BrowserFailure,
    LoginFailed,
    OSNotFound,
    PortalError,
    SessionExpired,
    SoftTimeLimit,
)
from esteira_scraping.profile import PortalCredentials, PortalProfile

# (stage, percent) as the task shows them while a scrape runs.
Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class ScrapedOS:
    numero_os: str
    fields: dict[str, str]  # mapped through the profile: cliente, cnpj, ...
    raw: list[tuple[str, str]]  # every (label, value) the card showed, in order


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def remaining(self, cap: float) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise SoftTimeLimit("soft time limit reached")
        return min(left, cap)


# Locator strategies _FIRST_PRESENT can look up in the page itself.
SCRIPTED_STRATEGIES = frozenset({"id", "class name", "css selector", "name", "tag name", "xpath"})
_FIRST_PRESENT = """
const finders = {
  "id": (v) => document.getElementById(v),
  "class name": (v) => document.getElementsByClassName(v)[0],
  "css selector": (v) => document.querySelector(v),
  "name": (v) => document.getElementsByName(v)[0],
  "tag name": (v) => document.getElementsByTagName(v)[0],
  "xpath": (v) => document.evaluate(
    v, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue,
};
const locators = arguments[0];
for (let i = 0; i < locators.length; i++) {
  if (finders[locators[i][0]](locators[i][1])) { return i; }
}
return -1;
"""


class ScrapeFlow:
    def __init__(self, profile: PortalProfile, credentials: PortalCredentials) -> None:
        self.profile = profile
        self.credentials = credentials

    def _find(self, driver: WebDriver, name: str) -> list[WebElement]:
        strategy, value = getattr(self.profile.locators, name)
        found: list[WebElement] = driver.find_elements(strategy, value)
        return found

    def _wait(
        self, driver: WebDriver, deadline: Deadline, cap: float, ready: Callable[[], object]
    ) -> object:
        limit = deadline.remaining(cap)
        try:
            return WebDriverWait(driver, limit, poll_frequency=0.05).until(lambda _driver: ready())
        except TimeoutException as exc:
            # Whichever bound the wait had decides what ran out: the job's time, or the portal's.
            if limit < cap:
                raise SoftTimeLimit("soft time limit reached while waiting for the portal") from exc
            raise PortalError("the portal did not answer in time") from exc

    def login(self, driver: WebDriver, deadline: Deadline) -> None:
        started = time.perf_counter()
        driver.get(self.profile.url(self.profile.login_path))
        self._wait(
            driver,
            deadline,
            self.profile.page_timeout_seconds,
            lambda: self._find(driver, "username"),
        )
        self._find(driver, "username")[0].send_keys(self.credentials.username)
        self._find(driver, "password")[0].send_keys(self.credentials.password.get_secret_value())
        submit = self._find(driver, "submit")[0]
        submit.click()
        # Wait for the next page (the old form goes stale), then: the search page, or refused.
        self._wait(driver, deadline, self.profile.page_timeout_seconds, lambda: _gone(submit))
        outcome = self._first_of(
            driver, deadline, self.profile.page_timeout_seconds, "search_input", "login_refused"
        )
        if outcome != "search_input":
            raise LoginFailed("the portal refused the configured credentials")
        metrics.SCRAPE_PHASE_DURATION.labels("login").observe(time.perf_counter() - started)

    def _first_of(self, driver: WebDriver, deadline: Deadline, cap: float, *names: str) -> str:
        """Waits until one of the named locators finds something; returns that name. Each poll
        is one script run in the page, however many locators (a WebDriver round trip each would
        cost the scraper more CPU than the page itself); strategies the script does not know
        are asked of WebDriver one by one."""
        locators = [list(getattr(self.profile.locators, name)) for name in names]
        if not all(strategy in SCRIPTED_STRATEGIES for strategy, _ in locators):
            return str(
                self._wait(
                    driver,
                    deadline,
                    cap,
                    lambda: next((name for name in names if self._find(driver, name)), None),
                )
            )

        def first_present() -> str | None:
            try:
                index = driver.execute_script(_FIRST_PRESENT, locators)
            except JavascriptException:  # the page is being replaced: look again
                return None
            return names[index] if isinstance(index, int) and index >= 0 else None

        return str(self._wait(driver, deadline, cap, first_present))

    def _open_search(self, driver: WebDriver, deadline: Deadline, progress: Progress) -> None:
        if self._find(driver, "search_input"):
            return  # a warm browser is already there; an expired login shows up at the search
        driver.get(self.profile.url(self.profile.app_path))
        # The login form's password field means the portal wants a login first.
        page = self._first_of(
            driver, deadline, self.profile.page_timeout_seconds, "search_input", "password"
        )
        if page == "password":
            progress("login", 20)
            self.login(driver, deadline)

    def lookup(
        self, driver: WebDriver, numero_os: str, deadline: Deadline, progress: Progress
    ) -> ScrapedOS:
        try:
            return self._lookup(driver, numero_os, deadline, progress)
        except SessionExpired:
            # The login lapsed between opening the page and the answer: once more, logged in.
            return self._lookup(driver, numero_os, deadline, progress)
        except WebDriverException as exc:
            raise BrowserFailure(f"browser failure: {type(exc).__name__}") from exc

    def _lookup(
        self, driver: WebDriver, numero_os: str, deadline: Deadline, progress: Progress
    ) -> ScrapedOS:
        progress("opening", 15)
        self._open_search(driver, deadline, progress)
        progress("searching", 40)
        started = time.perf_counter()
        search = self._find(driver, "search_input")[0]
        # Every WebDriver interaction costs tens of milliseconds: replace the field's text and
        # submit in one typing command where the portal's form submits on Enter.
        if self.profile.submit_with_enter:
            search.send_keys(Keys.CONTROL, "a", Keys.NULL, numero_os, Keys.ENTER)
        else:
            search.clear()
            search.send_keys(numero_os)
            self._find(driver, "search_button")[0].click()
        answer = self._first_of(
            driver,
            deadline,
            self.profile.answer_timeout_seconds,
            "details",
            "not_found",
            "error",
            "password",
        )
        metrics.SCRAPE_PHASE_DURATION.labels("search").observe(time.perf_counter() - started)
        if answer == "password":
            raise SessionExpired("the portal asked for a login during the search")
        if answer == "not_found":
            raise OSNotFound(f"OS {numero_os} não encontrada no portal")
        if answer == "error":
            message = self._find(driver, "error")[0].text.strip()[:200]
            raise PortalError(f"the portal answered an error: {message or 'no message'}")
        progress("extracting", 70)
        started = time.perf_counter()
        scraped = self._extract(driver, numero_os)
        metrics.SCRAPE_PHASE_DURATION.labels("extract").observe(time.perf_counter() - started)
        return scraped

    def _extract(self, driver: WebDriver, numero_os: str) -> ScrapedOS:
        # The card's whole text in one WebDriver call: a round trip per line would cost more
        # than the rest of the scrape.
        text = self._find(driver, "details")[0].text
        raw: list[tuple[str, str]] = []
        for line in text.splitlines():
            label, separator, value = line.partition(":")
            if separator:
                raw.append((label.strip().upper(), value.strip()))
        fields = {
            self.profile.fields[label]: value
            for label, value in raw
            if label in self.profile.fields
        }
        if fields.get("numero_os") != numero_os:
            raise PortalError("the portal answered something that is not the record of this OS")
        return ScrapedOS(numero_os=numero_os, fields=fields, raw=raw)


def _gone(element: WebElement) -> bool:
    """Is the element's page gone? chromedriver says so with a stale-element error, or, when the
    new page is already there, with an "unknown error: Node with given id does not belong to
    the document" (a plain WebDriverException: seen once in about twenty logins)."""
    try:
        element.is_enabled()
    except (StaleElementReferenceException, WebDriverException):
        return True
    return False
