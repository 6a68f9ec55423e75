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


# Every locator strategy a profile may use (esteira_scraping.profile.Strategy), looked up by
# the page's own script.
_FIND = """
const finders = {
  "id": (v) => document.getElementById(v),
  "class name": (v) => document.getElementsByClassName(v)[0],
  "css selector": (v) => document.querySelector(v),
  "name": (v) => document.getElementsByName(v)[0],
  "tag name": (v) => document.getElementsByTagName(v)[0],
  "xpath": (v) => document.evaluate(
    v, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue,
};
const find = (locator) => finders[locator[0]](locator[1]);
"""
# Answers [index, rendered text] of the first locator that finds an element, now or at the
# first change of the page after which one does; null after arguments[1] ms without one.
_FIRST_PRESENT = (
    _FIND
    + """
const [locators, waitMs, done] = arguments;
const first = () => {
  for (let i = 0; i < locators.length; i++) {
    const element = find(locators[i]);
    if (element) { return [i, element.innerText || ""]; }
  }
  return null;
};
const now = first();
if (now) { done(now); return; }
const observer = new MutationObserver(() => {
  const found = first();
  if (found) { observer.disconnect(); clearTimeout(timer); done(found); }
});
const timer = setTimeout(() => { observer.disconnect(); done(null); }, waitMs);
observer.observe(document, {childList: true, subtree: true, attributes: true, characterData: true});
"""
)
# Focuses the field and selects its text, which the next input then replaces; false: no field.
_FOCUS_AND_SELECT = (
    _FIND
    + """
const field = find(arguments[0]);
if (!field) { return false; }
field.focus();
if (field.select) { field.select(); }
return true;
"""
)
# One script run waits at most this long; a longer wait is several (each within WebDriver's
# script timeout, 30 s by default).
SCRIPT_WAIT_SECONDS = 5.0
_ENTER = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}


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
            raise _out_of_time(limit, cap) from exc

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
        outcome, _text = self._first_of(
            driver, deadline, self.profile.page_timeout_seconds, "search_input", "login_refused"
        )
        if outcome != "search_input":
            raise LoginFailed("the portal refused the configured credentials")
        metrics.SCRAPE_PHASE_DURATION.labels("login").observe(time.perf_counter() - started)

    def _first_of(
        self, driver: WebDriver, deadline: Deadline, cap: float, *names: str
    ) -> tuple[str, str]:
        """Waits until one of the named locators finds an element; returns that name and the
        element's rendered text. The page itself watches for it (a MutationObserver): one
        script run per wait rather than a WebDriver round trip per locator every few
        milliseconds, which cost the scraper more CPU than the page."""
        locators = [list(getattr(self.profile.locators, name)) for name in names]
        limit = deadline.remaining(cap)
        ends = time.monotonic() + limit
        while (left := ends - time.monotonic()) > 0:
            try:
                found = driver.execute_async_script(
                    _FIRST_PRESENT, locators, int(min(left, SCRIPT_WAIT_SECONDS) * 1000)
                )
            except JavascriptException:  # the page was replaced while the script waited
                continue
            if found:
                index, text = found
                return names[index], str(text)
        raise _out_of_time(limit, cap)

    def _open_search(self, driver: WebDriver, deadline: Deadline, progress: Progress) -> None:
        """Leaves the search field focused with its text selected."""
        if driver.execute_script(_FOCUS_AND_SELECT, list(self.profile.locators.search_input)):
            return  # a warm browser is already there; an expired login shows up at the search
        driver.get(self.profile.url(self.profile.app_path))
        # The login form's password field means the portal wants a login first.
        page, _text = self._first_of(
            driver, deadline, self.profile.page_timeout_seconds, "search_input", "password"
        )
        if page == "password":
            progress("login", 20)
            self.login(driver, deadline)
        driver.execute_script(_FOCUS_AND_SELECT, list(self.profile.locators.search_input))

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
        self._search(driver, numero_os)
        answer, text = self._first_of(
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
            message = text.strip()[:200]
            raise PortalError(f"the portal answered an error: {message or 'no message'}")
        progress("extracting", 70)
        started = time.perf_counter()
        scraped = self._extract(text, numero_os)
        metrics.SCRAPE_PHASE_DURATION.labels("extract").observe(time.perf_counter() - started)
        return scraped

    def _search(self, driver: WebDriver, numero_os: str) -> None:
        """Replaces the focused search field's text with the number and submits it. Every
        WebDriver command costs the browser milliseconds of CPU, and typing sends three key
        events per digit: by default the number goes in as one text input."""
        if self.profile.typing == "insert":
            driver.execute_cdp_cmd("Input.insertText", {"text": numero_os})
            if self.profile.submit_with_enter:
                driver.execute_cdp_cmd(
                    "Input.dispatchKeyEvent", {"type": "keyDown", "text": "\r", **_ENTER}
                )
                driver.execute_cdp_cmd("Input.dispatchKeyEvent", {"type": "keyUp", **_ENTER})
                return
        else:
            keys = (numero_os, Keys.ENTER) if self.profile.submit_with_enter else (numero_os,)
            driver.switch_to.active_element.send_keys(*keys)
            if self.profile.submit_with_enter:
                return
        self._find(driver, "search_button")[0].click()

    def _extract(self, text: str, numero_os: str) -> ScrapedOS:
        """The details card's text (read with the wait that found it): a `LABEL: value` a line."""
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


def _out_of_time(limit: float, cap: float) -> Exception:
    """Whichever bound a wait had decides what ran out: the job's time, or the portal's."""
    if limit < cap:
        return SoftTimeLimit("soft time limit reached while waiting for the portal")
    return PortalError("the portal did not answer in time")


def _gone(element: WebElement) -> bool:
    """Is the element's page gone? chromedriver says so with a stale-element error, or, when the
    new page is already there, with an "unknown error: Node with given id does not belong to
    the document" (a plain WebDriverException: seen once in about twenty logins)."""
    try:
        element.is_enabled()
    except (StaleElementReferenceException, WebDriverException):
        return True
    return False
