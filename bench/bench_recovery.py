"""`python -m bench recovery`: how long users wait when a worker dies under them, measured from
the client, on the defaults (heartbeat every 2 s; ruptura job timeout 30 s, scraper 330 s).

- a ruptura worker SIGKILLed in the middle of a 3,000-order session (a second worker is
  online): kill → the session's last result, and what arq's in-progress keys would have cost
  (the job timeout + 10 s);
- a scraper worker SIGKILLed while it scrapes (the portal answers in 4 s): kill → the task
  retried by the next worker, and kill → success; and whether any browser of the dead worker
  is alive 10 s after the kill.
"""

import os
import signal
import tempfile
import time
from pathlib import Path

import httpx

from esteira_cli.processes import free_port
from esteira_portal.records import FIRST_OS
from esteira_scraping.processes import descendants
from esteira_testing.components import EsteiraProcess, LocalStack, seeded_database
from esteira_testing.waiting import alive, wait_until

ORDERS = 3000


def _session_after_a_kill(stack: LocalStack, api: httpx.Client) -> tuple[float, int]:
    doomed = stack.worker("ruptura", "doomed")
    stack.worker("ruptura", "survivor")
    body = {"all": True, "reference_date": "2026-03-02"}
    session_id = api.post("/api/v1/ruptura/sessions", json=body).json()["session_id"]
    status = f"/api/v1/ruptura/sessions/{session_id}"
    wait_until(lambda: api.get(status).json()["processed"] > 0, 60, "never started")
    killed = time.perf_counter()
    os.kill(doomed.process.pid, signal.SIGKILL)
    offset, results = 0, 0
    while True:
        page = api.get(f"{status}/results", params={"offset": offset, "wait": 5}).json()
        offset, results = page["next_offset"], results + len(page["results"])
        if page["done"]:
            return time.perf_counter() - killed, results


def _scrape_after_a_kill(stack: LocalStack, api: httpx.Client, portal: str) -> dict[str, float]:
    switches = httpx.get(f"{portal}/admin/switches").json()
    httpx.put(f"{portal}/admin/switches", json={**switches, "latency_ms": 4000})
    doomed = stack.worker("scraper", "doomed-scraper")
    task_id = api.post(f"/api/v1/scraping/os/{FIRST_OS}").json()["task_id"]
    task = f"/api/v1/scraping/tasks/{task_id}"
    wait_until(lambda: api.get(task).json()["stage"] == "searching", 60, "never scraped")
    browsers = descendants(doomed.process.pid)
    killed = time.perf_counter()
    os.kill(doomed.process.pid, signal.SIGKILL)
    httpx.put(f"{portal}/admin/switches", json=switches)
    stack.worker("scraper", "next-scraper")
    wait_until(lambda: api.get(task).json()["attempts"] >= 2, 400, "never retried")
    retried = time.perf_counter() - killed
    wait_until(lambda: api.get(task).json()["status"] == "success", 120, "never succeeded")
    done = time.perf_counter() - killed
    time.sleep(max(0.0, 10 - (time.perf_counter() - killed)))
    return {
        "retried": retried,
        "done": done,
        "browsers_left": float(sum(alive(pid) for pid in browsers)),
    }


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="esteira-bench-recovery-"))
    url = seeded_database(f"sqlite:///{workdir / 'recovery.db'}", orders=ORDERS, products=60)
    with LocalStack(workdir, url, ESTEIRA_LOG_LEVEL="WARNING") as stack:
        portal_port = free_port()
        portal = EsteiraProcess(
            "portal", ["portal", "--port", str(portal_port)], stack.env, workdir
        ).start(portal_port)
        stack.processes.append(portal)
        stack.env["ESTEIRA_PORTAL_URL"] = f"http://127.0.0.1:{portal_port}"
        with httpx.Client(base_url=stack.gateway(), timeout=30) as api:
            session_seconds, results = _session_after_a_kill(stack, api)
            scrape = _scrape_after_a_kill(stack, api, stack.env["ESTEIRA_PORTAL_URL"])
    rows = [
        (
            f"ruptura worker SIGKILLed: kill → session done ({ORDERS} orders)",
            f"{session_seconds:.1f} s",
        ),
        ("results, each order once", f"{results} of {ORDERS}"),
        ("the same wait on arq's in-progress expiry alone (timeout + 10 s)", "≥ 40 s"),
        ("scraper worker SIGKILLed mid-scrape: kill → task retried", f"{scrape['retried']:.1f} s"),
        ("kill → task succeeded (portal answers in 4 s)", f"{scrape['done']:.1f} s"),
        ("the dead scraper's browser processes alive 10 s after", f"{scrape['browsers_left']:.0f}"),
    ]
    print("| measure | value |\n|---|---:|")
    for measure, value in rows:
        print(f"| {measure} | {value} |")
    print(
        f"recovery: session done {session_seconds:.1f} s after a ruptura worker's SIGKILL; "
        f"scrape retried {scrape['retried']:.1f} s after a scraper's"
    )
