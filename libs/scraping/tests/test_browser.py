"""The headless Chromium the scraper starts: what it costs in processes."""

import os
import time
from pathlib import Path

import pytest

from esteira_scraping.browser import BROWSER_NICENESS
from esteira_scraping.processes import descendants

pytestmark = pytest.mark.integration


def _renderers(browser_pid: int) -> list[list[str]]:
    found = []
    for pid in descendants(browser_pid):
        try:
            # Chromium rewrites its command line as one string: split on spaces too.
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ")
        except OSError:
            continue
        if "--type=renderer" in arguments.split():
            found.append(arguments.split())
    return found


def test_a_browser_runs_one_renderer_for_its_page_and_no_preloaded_ui(chromium) -> None:
    chromium.driver.get("data:text/html,<form><input id=numero_os></form>")
    assert chromium.driver_pid is not None
    # The renderer of the blank page it started with may take a moment to exit.
    deadline = time.monotonic() + 10
    while len(renderers := _renderers(chromium.driver_pid)) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    # A headless browser never shows its address bar: a renderer preloaded for the address
    # bar's popups (--top-chrome-webui) would be a quarter of the browser's memory.
    assert [r for r in renderers if "--top-chrome-webui" in r] == []
    assert len(renderers) == 1


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_a_browser_runs_below_the_priority_of_the_process_that_drives_it(chromium) -> None:
    """Chromium busy on a page must leave the CPU to its worker's or gateway's event loop."""
    assert chromium.driver_pid is not None
    browsers = [chromium.driver_pid, *descendants(chromium.driver_pid)]
    assert len(browsers) > 2  # chromedriver, Chromium and its helpers
    own = _niceness(os.getpid())
    assert own == os.nice(0)  # the process that started it kept its own priority
    assert {_niceness(pid) for pid in browsers} == {min(19, own + BROWSER_NICENESS)}
