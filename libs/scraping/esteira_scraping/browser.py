"""Starting headless Chromium through chromedriver, the one way the project does it (the browser
pool, the tests and the benchmarks all come here)."""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from esteira_scraping.processes import started

# Headless on a server: no sandbox (containers run it unprivileged), no GPU, no /dev/shm (small
# in containers), and nothing that phones home (no network is reachable but the portal's).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--mute-audio",
    "--window-size=1280,900",
    # Fewer processes, less memory: one portal, one tab, nothing to isolate from each other.
    "--no-zygote",
    "--in-process-gpu",
    "--disable-software-rasterizer",
    "--renderer-process-limit=1",
    "--enable-features=NetworkServiceInProcess2",
    "--disable-features=site-per-process,IsolateOrigins,Translate,OptimizationHints,MediaRouter,"
    # The address bar's two WebUI popups are preloaded into a renderer of their own (~190 MiB
    # RSS, a quarter of a browser) that a headless browser never shows.
    "WebUIOmniboxPopup,WebUIOmniboxAimPopup",
)

# chromedriver logs every command, its whole body pretty-printed, and its answer at INFO by
# default; its output goes nowhere (selenium sends it to /dev/null), so formatting it is CPU
# spent for nothing on each of a lookup's commands.
CHROMEDRIVER_FLAGS = ["--log-level=OFF"]

logger = logging.getLogger(__name__)

# How much lower than its owner's a browser's CPU priority is: a busy Chromium takes what the
# worker or gateway that drives it leaves, never their event loop's time (heartbeats, task
# updates, requests), in a pod or on a machine shared with the rest of the stack.
BROWSER_NICENESS = 10


def _launcher_started() -> None:
    # On Linux a thread has a niceness of its own, and a child starts with its forking thread's:
    # chromedriver, and every Chromium process under it, run at this lower priority while the
    # rest of the process keeps its own.
    os.nice(BROWSER_NICENESS)


# The threads that start chromedriver: a parent-death signal follows the thread that forked,
# so it must be one that lives as long as the process, not a caller's short-lived thread.
LAUNCHERS = ThreadPoolExecutor(
    max_workers=4, thread_name_prefix="browser-launcher", initializer=_launcher_started
)


@dataclass(frozen=True)
class BrowserBinaries:
    chromium: str = "/usr/bin/chromium"
    chromedriver: str = "/usr/bin/chromedriver"

    @classmethod
    def discover(cls) -> BrowserBinaries:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser") or cls.chromium
        driver = shutil.which("chromedriver") or cls.chromedriver
        return leashed(cls(chromium=chromium, chromedriver=driver))


# What a process's browsers keep in the temporary folder: each browser's profile (Chromium's own
# temporary files inside it) and the process's leash scripts, named after their owner.
OWN_FILES = re.compile(r"^esteira-(?:chromium|leash)-(\d+)-(\d+)-")


def _owner() -> str:
    """This process, as the owner of its browsers' files: its pid and when it started (a pid
    alone comes back: a container's processes get the same ones after every restart)."""
    return f"{os.getpid()}-{started(os.getpid())}"


def remove_stale_browser_files(folder: str | None = None) -> int:
    """Removes what the browsers of processes no longer running left in the temporary folder (a
    process killed with SIGKILL leaves each browser's profile, a few MiB, in a pod's /tmp,
    which outlives the container's restarts); returns how many folders it removed. Chromium's
    and chromedriver's own empty folders there (org.chromium.*, a few KiB) name no owner: they
    stay."""
    removed = 0
    for entry in os.scandir(folder or tempfile.gettempdir()):
        found = OWN_FILES.match(entry.name)
        if found and started(int(found[1])) != found[2]:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


@functools.cache
def _tidied() -> None:
    """Once a process, before its first browser: what dead ones left, removed."""
    removed = remove_stale_browser_files()
    if removed:
        logger.info("stale browser files removed", extra={"folders": removed})


CAP_SETPCAP, CAP_SYS_NICE = 8, 23


def _capable(capability: int) -> bool:
    """Whether this process holds a Linux capability (root does, unless a container dropped
    it): raising a priority takes CAP_SYS_NICE, dropping a capability for a child CAP_SETPCAP."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> capability & 1)
    return False


@functools.cache
def leashed(binaries: BrowserBinaries) -> BrowserBinaries:
    """The same binaries, each started through `setpriv --pdeathsig KILL`: chromedriver dies
    with the thread that started it (one of LAUNCHERS, which live as long as the process), and
    Chromium with chromedriver (its renderers follow their browser), so a worker or gateway
    killed with SIGKILL leaves no browser behind. Started by a process that may raise a
    priority (root), they also lose that right, which Chromium uses (its main threads at -8),
    so they keep BROWSER_NICENESS. Without setpriv (util-linux), the binaries as they are, and
    a warning."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        logger.warning("setpriv not found: a killed process would leave its browsers running")
        return binaries
    keep_priority = _capable(CAP_SYS_NICE) and _capable(CAP_SETPCAP)
    options = "--pdeathsig KILL" + (" --bounding-set -sys_nice" if keep_priority else "")
    folder = Path(tempfile.mkdtemp(prefix=f"esteira-leash-{_owner()}-"))
    wrapped = {}
    for name, target in (("chromium", binaries.chromium), ("chromedriver", binaries.chromedriver)):
        script = folder / name
        script.write_text(f'#!/bin/sh\nexec {setpriv} {options} -- {target} "$@"\n')
        script.chmod(0o755)
        wrapped[name] = str(script)
    return BrowserBinaries(**wrapped)


class Browser:
    """One headless Chromium with its own fresh profile, removed when the browser quits (or,
    after its process was killed, by the next process to start a browser)."""

    def __init__(self, binaries: BrowserBinaries | None = None, page_load_timeout: float = 30):
        _tidied()
        binaries = binaries or BrowserBinaries.discover()
        self.profile = Path(tempfile.mkdtemp(prefix=f"esteira-chromium-{_owner()}-"))
        options = webdriver.ChromeOptions()
        options.binary_location = binaries.chromium
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.service = Service(
            executable_path=binaries.chromedriver, service_args=CHROMEDRIVER_FLAGS
        )
        try:
            self.driver = LAUNCHERS.submit(
                webdriver.Chrome, options=options, service=self.service
            ).result()
        except Exception:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_page_load_timeout(page_load_timeout)

    @property
    def driver_pid(self) -> int | None:
        process = self.service.process
        return None if process is None else process.pid

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            self.discard()

    def discard(self) -> None:
        """Forgets a browser whose processes were killed: reaps chromedriver (no zombie is left
        in the process table) and removes the profile."""
        process = self.service.process
        if process is not None:
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)
