"""`make bench-fair`: one tenant's small work beside another tenant's backlog, timed from the
client. The whole local stack on this machine: redis-server, the gateway, one ruptura worker
(8 batches at once), one scraper worker (3 browsers), the demo portal; default settings, so the
portal's budget is 30 lookups a minute (bursts of 5) for everyone.

Alpha posts 50 lookups of OS numbers the portal does not know, then 30 sessions of the whole
carteira (2,000 orders: 60,000 orders in all). At once beta starts a 1-order session, followed
by long polls until its result is read, and looks up an OS the portal has (not recorded yet, so
it is scraped), followed by long polls until it succeeded; both side by side. A warm-up first
(a session, a lookup, then the portal's bucket refills), so beta's lookup is not timing a
browser's start.
"""

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from esteira_api.apikeys import generate_key, key_digest
from esteira_cli.processes import free_port
from esteira_portal.records import FIRST_OS
from esteira_testing.components import EsteiraProcess, LocalStack, seeded_database

ORDERS = 2000
SESSIONS = 30
LOOKUPS = 50
REFERENCE = "2026-03-02"
KEYS = {"alpha": generate_key(), "beta": generate_key()}


def _client(base_url: str, tenant: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {KEYS[tenant]}"}, timeout=60
    )


def _session(client: httpx.Client, body: dict) -> float:
    """Seconds from the POST to the last result read, following the session by long polls."""
    started = time.perf_counter()
    response = client.post("/api/v1/ruptura/sessions", json=body)
    response.raise_for_status()
    url = f"/api/v1/ruptura/sessions/{response.json()['session_id']}/results"
    offset = 0
    while True:
        page = client.get(url, params={"offset": offset, "wait": 25}).json()
        offset = page["next_offset"]
        if page["done"]:
            return time.perf_counter() - started


def _lookup(client: httpx.Client, numero_os: str) -> float:
    """Seconds from the POST to the task's success, following it by long polls."""
    started = time.perf_counter()
    response = client.post(f"/api/v1/scraping/os/{numero_os}")
    response.raise_for_status()
    url = f"/api/v1/scraping/tasks/{response.json()['task_id']}"
    since = 0.0
    while True:
        task = client.get(url, params={"since": since, "wait": 25}).json()
        if task["status"] in ("success", "failed"):
            assert task["status"] == "success", task
            return time.perf_counter() - started
        since = task["updated_at"]


def _processed(client: httpx.Client, session_ids: list[str]) -> int:
    return sum(
        client.get(f"/api/v1/ruptura/sessions/{sid}").json()["processed"] for sid in session_ids
    )


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="esteira-bench-fair-"))
    database_url = seeded_database(f"sqlite:///{workdir / 'fair.db'}", orders=ORDERS, products=200)
    portal_port = free_port()
    portal = EsteiraProcess(
        "portal", ["portal", "--port", str(portal_port)], {"ESTEIRA_LOG_LEVEL": "WARNING"}, workdir
    ).start(portal_port)
    try:
        with LocalStack(
            workdir,
            database_url,
            ESTEIRA_LOG_LEVEL="WARNING",
            ESTEIRA_PORTAL_URL=f"http://127.0.0.1:{portal_port}",
            ESTEIRA_API_KEYS=",".join(f"{t}:{key_digest(k)}" for t, k in KEYS.items()),
        ) as stack:
            stack.worker("ruptura")
            stack.worker("scraper")
            base_url = stack.gateway()
            with _client(base_url, "alpha") as alpha, _client(base_url, "beta") as beta:
                figures = _run(alpha, beta)
    finally:
        portal.stop()

    print("| measure | value |")
    print("|---|---:|")
    print(f"| beta's 1-order session, POST → result read | {figures['session']:.2f} s |")
    print(f"| beta's lookup of an OS the portal has, POST → success | {figures['lookup']:.2f} s |")
    print(
        f"| alpha's orders done when beta's session ended | "
        f"{figures['alpha_done']:,} of {figures['alpha_total']:,} |"
    )
    print(
        f"| alpha's lookups not started when beta's lookup ended | "
        f"{figures['alpha_waiting']} of {LOOKUPS} |"
    )
    print(
        f"| alpha's {figures['alpha_total']:,} orders, first POST → all done | "
        f"{figures['alpha_all']:.1f} s |"
    )
    print(
        f"fair: beta's 1-order session {figures['session']:.2f} s and single lookup "
        f"{figures['lookup']:.2f} s beside alpha's {figures['alpha_total']:,} orders and "
        f"{LOOKUPS} lookups"
    )


def _run(alpha: httpx.Client, beta: httpx.Client) -> dict[str, float]:
    # Warm-up: a worker's first session and the scraper's browsers; then the bucket refills.
    _session(beta, {"pedidos": [str(100001 + n) for n in range(20)], "reference_date": REFERENCE})
    _lookup(beta, str(FIRST_OS + 1))
    time.sleep(12)

    began = time.perf_counter()
    for n in range(LOOKUPS):
        alpha.post(f"/api/v1/scraping/os/{9_100_000 + n}").raise_for_status()
    body = {"all": True, "reference_date": REFERENCE}
    sessions = [alpha.post("/api/v1/ruptura/sessions", json=body) for _ in range(SESSIONS)]
    for response in sessions:
        response.raise_for_status()
    session_ids = [r.json()["session_id"] for r in sessions]
    alpha_total = sum(r.json()["total"] for r in sessions)

    figures: dict[str, float] = {"alpha_total": alpha_total}

    def alpha_done() -> float:
        while _processed(alpha, session_ids) < alpha_total:
            time.sleep(0.2)
        return time.perf_counter() - began

    with ThreadPoolExecutor(3) as pool:
        small = pool.submit(_session, beta, {"pedidos": [str(100001)], "reference_date": REFERENCE})
        single = pool.submit(_lookup, beta, str(FIRST_OS + 100))
        backlog = pool.submit(alpha_done)
        figures["session"] = small.result()
        figures["alpha_done"] = _processed(alpha, session_ids)
        figures["lookup"] = single.result()
        tasks = alpha.get("/api/v1/scraping/tasks", params={"limit": 100}).json()
        figures["alpha_waiting"] = sum(t["status"] == "queued" for t in tasks)
        figures["alpha_all"] = backlog.result()
    return figures


if __name__ == "__main__":
    main()
