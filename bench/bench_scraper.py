"""`make bench-scraper`: per-OS latency with a warm, logged-in browser against a fresh browser
per job (the seed's way), the memory of one pooled browser, and the throughput of a real scraper
worker with 3 browsers over 60 lookups through the gateway.

Everything talks to the demo portal (no injected latency) on this machine. Memory is PSS (shared
pages split fairly between the processes sharing them) summed over each chromedriver and every
Chromium process under it, in a real worker's pool of 3 after its 60 lookups, per browser.
"""

import statistics
import tempfile
import time
from pathlib import Path

import httpx

from esteira_cli.processes import free_port
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_portal.records import FIRST_OS
from esteira_scraping.browser import Browser
from esteira_scraping.flow import Deadline, ScrapeFlow
from esteira_scraping.processes import descendants
from esteira_scraping.profile import PortalCredentials, PortalProfile
from esteira_testing.components import EsteiraProcess, LocalStack

WARM_LOOKUPS = 20
COLD_LOOKUPS = 5
THROUGHPUT_LOOKUPS = 60


def _pss_mib(pid: int) -> float:
    total_kib = 0
    for process in (pid, *descendants(pid)):
        try:
            for line in Path(f"/proc/{process}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _no_progress(_stage: str, _percent: int) -> None:
    return None


def _warm(flow: ScrapeFlow) -> list[float]:
    browser = Browser()
    try:
        flow.lookup(browser.driver, str(FIRST_OS), Deadline(60), _no_progress)  # logs in
        latencies = []
        for index in range(WARM_LOOKUPS):
            started = time.perf_counter()
            flow.lookup(browser.driver, str(FIRST_OS + 1 + index), Deadline(60), _no_progress)
            latencies.append(time.perf_counter() - started)
        return latencies
    finally:
        browser.quit()


def _cold(flow: ScrapeFlow) -> list[float]:
    latencies = []
    for index in range(COLD_LOOKUPS):
        started = time.perf_counter()
        browser = Browser()
        try:
            flow.lookup(browser.driver, str(FIRST_OS + 100 + index), Deadline(60), _no_progress)
        finally:
            browser.quit()
        latencies.append(time.perf_counter() - started)
    return latencies


def _throughput(portal_url: str, workdir: Path) -> tuple[float, float]:
    """Lookups a minute of one worker with 3 browsers, and the PSS of one of its browsers."""
    database_url = f"sqlite:///{workdir / 'scraper.db'}"
    upgrade(create_db_engine(database_url).url)
    with LocalStack(
        workdir,
        database_url,
        ESTEIRA_PORTAL_URL=portal_url,
        ESTEIRA_SCRAPE_RATE_PER_MINUTE="100000",
        ESTEIRA_SCRAPE_RATE_BURST="100",
        ESTEIRA_LOG_LEVEL="WARNING",
    ) as stack:
        worker = stack.worker("scraper")
        with httpx.Client(base_url=stack.gateway(), timeout=30) as client:
            started = time.perf_counter()
            pending = {
                client.post(f"/api/v1/scraping/os/{FIRST_OS + 200 + i}").json()["task_id"]
                for i in range(THROUGHPUT_LOOKUPS)
            }
            while pending:
                for task_id in list(pending):
                    status = client.get(f"/api/v1/scraping/tasks/{task_id}").json()["status"]
                    if status in ("success", "failed"):
                        assert status == "success", task_id
                        pending.discard(task_id)
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
        worker_pid = worker.process.pid
        browsers = [pid for pid in descendants(worker_pid) if _comm(pid) == "chromedriver"]
        assert len(browsers) == 3, browsers
        pss_per_browser = sum(_pss_mib(pid) for pid in browsers) / len(browsers)
        return THROUGHPUT_LOOKUPS / elapsed * 60, pss_per_browser


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="esteira-bench-scraper-"))
    portal_port = free_port()
    portal = EsteiraProcess(
        "portal", ["portal", "--port", str(portal_port)], {"ESTEIRA_LOG_LEVEL": "WARNING"}, workdir
    ).start(portal_port)
    portal_url = f"http://127.0.0.1:{portal_port}"
    try:
        flow = ScrapeFlow(PortalProfile(base_url=portal_url), PortalCredentials())
        warm = _warm(flow)
        cold = _cold(flow)
        per_minute, pss = _throughput(portal_url, workdir)
    finally:
        portal.stop()

    warm_median, cold_median = statistics.median(warm), statistics.median(cold)
    print("| measure | value |")
    print("|---|---:|")
    print(f"| warm pool, median per OS ({WARM_LOOKUPS} lookups) | {warm_median * 1000:.0f} ms |")
    print(
        f"| browser per job, median per OS ({COLD_LOOKUPS} lookups) | {cold_median * 1000:.0f} ms |"
    )
    print(f"| PSS per browser in a worker's pool of 3, after the run | {pss:.0f} MiB |")
    print(f"| real worker, 3 browsers, {THROUGHPUT_LOOKUPS} lookups | {per_minute:.0f} /min |")
    print(
        f"scraper: warm pool {cold_median / warm_median:.1f}x faster than browser-per-job; "
        f"{pss:.0f} MiB PSS per browser; {per_minute:.0f} lookups/min with 3 browsers"
    )


if __name__ == "__main__":
    main()
