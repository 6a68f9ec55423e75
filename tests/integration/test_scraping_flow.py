"""Scraping end to end with real components: the demo portal, redis-server, scraper worker
processes driving headless Chromium, the gateway, and a real database."""

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
from sqlalchemy import Engine, func, select

from esteira_api.apikeys import generate_key, key_digest
from esteira_cli.processes import free_port
from esteira_core import keys
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_portal.records import FIRST_OS
from esteira_scraping.processes import descendants
from esteira_scraping.runner import STAGES_EVERY_SECONDS
from esteira_scraping.tables import clientes, equipamentos, ordens_servico

pytestmark = pytest.mark.integration
OS_A, OS_B, OS_C, OS_D = (str(FIRST_OS + n) for n in (1, 2, 3, 4))
MISSING = "999999"
PORTAL_PASSWORD = "s3nha-do-portal"
API_KEYS = {"vendas": generate_key(), "suporte": generate_key()}


@dataclass
class Stack:
    api: httpx.Client
    portal: httpx.Client
    workers: list
    engine: Engine

    def as_tenant(self, tenant: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.api.base_url,
            headers={"Authorization": f"Bearer {API_KEYS[tenant]}"},
            timeout=30,
        )

    def task(self, task_id: str) -> dict:
        return self.api.get(f"/api/v1/scraping/tasks/{task_id}").json()

    def wait_task(self, task_id: str, until=("success", "failed"), timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            task = self.task(task_id)
            if task["status"] in until:
                return task
            assert time.monotonic() < deadline, f"task stuck: {task}"
            time.sleep(0.1)

    def switches(self, **changes) -> None:
        current = self.portal.get("/admin/switches").json()
        self.portal.put("/admin/switches", json={**current, **changes}).raise_for_status()

    def worker_metric(self, name: str) -> float:
        total = 0.0
        for port in (w.metrics_port for w in self.workers):
            for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
                if line.startswith(name) and not line.startswith("#"):
                    total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture
def scraping_stack(redis_url, tmp_path: Path, esteira_processes):
    started: list[Stack] = []

    def start(database_url: str | None = None, workers: int = 1, **worker_env: str) -> Stack:
        database_url = database_url or f"sqlite:///{tmp_path / 'scraping.db'}"
        engine = create_db_engine(database_url)
        upgrade(engine.url)
        portal_port, api_port = free_port(), free_port()
        credentials = {
            "ESTEIRA_PORTAL_USERNAME": "robo",
            "ESTEIRA_PORTAL_PASSWORD": PORTAL_PASSWORD,
        }
        esteira_processes(
            "portal", ["portal", "--port", str(portal_port)], credentials, port=portal_port
        )
        env = {
            **credentials,
            "ESTEIRA_REDIS_URL": redis_url,
            "ESTEIRA_DATABASE_URL": database_url,
            "ESTEIRA_PORTAL_URL": f"http://127.0.0.1:{portal_port}",
            "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
            "ESTEIRA_SCRAPE_BACKOFF_SECONDS": "0.2",
            "ESTEIRA_API_KEYS": ",".join(f"{t}:{key_digest(k)}" for t, k in API_KEYS.items()),
            **worker_env,
        }
        processes = []
        for index in range(workers):
            port = free_port()
            process = esteira_processes(
                f"scraper-{index}",
                ["worker", "scraper"],
                {**env, "ESTEIRA_METRICS_PORT": str(port)},
                port=port,
            )
            process.metrics_port = port
            processes.append(process)
        esteira_processes("api", ["api", "--port", str(api_port)], env, port=api_port)
        stack = Stack(
            api=httpx.Client(
                base_url=f"http://127.0.0.1:{api_port}",
                headers={"Authorization": f"Bearer {API_KEYS['vendas']}"},
                timeout=30,
            ),
            portal=httpx.Client(base_url=f"http://127.0.0.1:{portal_port}", timeout=30),
            workers=processes,
            engine=engine,
        )
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.api.close()
        stack.portal.close()
        stack.engine.dispose()


def _count(engine: Engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_lookup_scrapes_records_and_then_answers_from_the_database(
    scraping_stack, database_url, tmp_path
):
    stack = scraping_stack(database_url)
    queued = stack.api.post(f"/api/v1/scraping/os/{OS_A}")
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    task = stack.wait_task(queued.json()["task_id"])
    assert task["status"] == "success" and task["progress"] == 100 and task["attempts"] == 1
    result = task["result"]
    assert result["data"]["numero_os"] == OS_A and result["data"]["cliente"]
    assert result["scraped_fields"] >= 10

    assert (
        _count(stack.engine, clientes),
        _count(stack.engine, equipamentos),
        _count(stack.engine, ordens_servico),
    ) == (1, 1, 1)
    with stack.engine.connect() as connection:
        row = connection.execute(select(clientes.c.cnpj, clientes.c.nome)).one()
    assert row.cnpj.isdigit() and len(row.cnpj) == 14 and row.nome == result["data"]["cliente"]

    again = stack.api.post(f"/api/v1/scraping/os/{OS_A}")
    assert again.status_code == 200
    assert (
        again.json()["status"] == "found_existing" and again.json()["data"]["cliente"] == row.nome
    )

    seed_shape = stack.api.post(f"/api/desenvolvimento/buscar-os-async/{OS_A}").json()
    assert seed_shape["status"] == "found_existing" and seed_shape["fonte"] == "banco_local"
    status = stack.api.get(f"/api/desenvolvimento/scraping-status/{task['task_id']}").json()
    assert status["status"] == "SUCCESS" and status["progress"] == 100
    assert {"status", "data", "cliente_id", "equipamento_id", "scraped_fields"} <= set(
        status["result"]
    )

    # A second OS of the same cliente reuses the cliente row (upsert by CNPJ).
    same_cliente = str(int(OS_A) + 8)
    stack.wait_task(stack.api.post(f"/api/v1/scraping/os/{same_cliente}").json()["task_id"])
    assert (_count(stack.engine, clientes), _count(stack.engine, ordens_servico)) == (1, 2)

    # The portal password went into a login form and the API keys into headers; no secret may be
    # anywhere else: not in any process's log, a task, an error body or a metric.
    logs = "".join(path.read_text(errors="replace") for path in tmp_path.glob("*.log"))
    wrong_key = httpx.post(
        f"{stack.api.base_url}/api/v1/scraping/os/{OS_A}",
        headers={"Authorization": f"Bearer {API_KEYS['suporte']}x"},
    )
    assert wrong_key.status_code == 401
    seen = (
        logs
        + str(stack.task(task["task_id"]))
        + stack.api.get("/metrics").text
        + wrong_key.text
        + stack.api.get("/api/v1/scraping/tasks").text
    )
    assert "scrape queued" in logs
    for secret in (PORTAL_PASSWORD, *API_KEYS.values()):
        assert secret not in seen


def test_not_found_is_final_and_bad_numbers_never_reach_the_portal(scraping_stack):
    stack = scraping_stack()
    task = stack.wait_task(stack.api.post(f"/api/v1/scraping/os/{MISSING}").json()["task_id"])
    assert task["status"] == "failed" and task["error"]["code"] == "not_found"
    assert task["attempts"] == 1
    failure = stack.api.get(f"/api/desenvolvimento/scraping-status/{task['task_id']}").json()
    assert failure["status"] == "FAILURE" and "não encontrada" in failure["error"]

    lookups_before = stack.portal.get("/admin/stats").json()["lookups"]
    for bad in ("12a", "1" * 13, "1;DROP", "%2e%2e", "１２３"):
        response = stack.api.post(f"/api/v1/scraping/os/{bad}")
        assert response.status_code in (404, 422), bad
        assert "error" in response.json()
    assert stack.api.get(f"/api/v1/scraping/tasks/{'0' * 32}").status_code == 404
    assert stack.portal.get("/admin/stats").json()["lookups"] == lookups_before

    # "Not found" was the portal's answer, not a browser failure: the same logged-in browser
    # serves the next lookup (a new one would have logged in again).
    assert (
        stack.wait_task(stack.api.post(f"/api/v1/scraping/os/{OS_B}").json()["task_id"])["status"]
        == "success"
    )
    assert stack.portal.get("/admin/stats").json()["logins"] == 1
    assert stack.worker_metric("esteira_browser_restarts_total") == 0


def test_transient_portal_errors_are_retried_until_the_portal_recovers(scraping_stack):
    stack = scraping_stack(ESTEIRA_SCRAPE_BACKOFF_SECONDS="1")
    stack.switches(error_rate=1.0)
    task_id = stack.api.post(f"/api/v1/scraping/os/{OS_B}").json()["task_id"]
    retrying = stack.wait_task(task_id, until=("retrying",))
    assert retrying["error"]["code"] == "portal_error"
    stack.switches(error_rate=0.0)
    task = stack.wait_task(task_id)
    assert task["status"] == "success" and task["attempts"] >= 2


def test_a_long_poll_answers_at_each_change_of_the_task_and_at_once_once_it_ended(
    scraping_stack,
):
    stack = scraping_stack()
    stack.switches(latency_ms=1500)  # the search takes a while: the polls must wait for it
    task = stack.api.post(f"/api/v1/scraping/os/{OS_D}").json()
    task = stack.task(task["task_id"])
    answers, waited = [], 0.0
    while task["status"] not in ("success", "failed"):
        answer = stack.api.get(
            f"/api/v1/scraping/tasks/{task['task_id']}",
            params={"since": task["updated_at"], "wait": 20},
        )
        assert answer.status_code == 200
        if "server-timing" in answer.headers:
            waited = max(waited, float(answer.headers["server-timing"].split("dur=")[1]))
        changed = answer.json()
        # Held until something changed: never the state the client already had.
        assert changed["updated_at"] > task["updated_at"] or changed["status"] == "success"
        answers.append(changed["stage"])
        task = changed
    assert task["status"] == "success"
    assert len(answers) <= 8  # a handful of changes, not a request every 100 ms for 1.5 s
    assert "searching" in answers  # the stage the portal held for 1.5 s was shown
    assert waited > 500  # one answer waited for the portal's 1.5 s, and said so
    began = time.monotonic()
    ended = stack.api.get(
        f"/api/v1/scraping/tasks/{task['task_id']}",
        params={"since": task["updated_at"], "wait": 20},
    )
    assert ended.json()["status"] == "success" and time.monotonic() - began < 5


def test_the_followers_of_a_fast_lookup_are_woken_by_its_start_and_end_not_by_every_stage(
    scraping_stack, redis_url
):
    """Each change of a task wakes everyone following it (hundreds, for a popular OS): a
    lookup's stages reach them at most every STAGES_EVERY_SECONDS, seen as they see them, on
    the channel the gateway listens to."""
    stack = scraping_stack()
    warm = stack.api.post(f"/api/v1/scraping/os/{OS_A}").json()["task_id"]
    assert stack.wait_task(warm)["status"] == "success"  # a logged-in browser: a fast lookup
    listener = redis_lib.Redis.from_url(redis_url).pubsub()
    listener.psubscribe(keys.scrape_task_events("*"))
    assert listener.get_message(timeout=5)["type"] == "psubscribe"
    task_id = stack.api.post(f"/api/v1/scraping/os/{OS_B}").json()["task_id"]
    channel = keys.scrape_task_events(task_id).encode()
    published: list[tuple[float, bytes]] = []
    while not published or published[-1][1] != b"finished":
        message = listener.get_message(timeout=30)
        assert message is not None, f"the task stopped changing: {published}"
        if message["type"] == "pmessage" and message["channel"] == channel:
            published.append((time.monotonic(), message["data"]))
    listener.close()
    ended = stack.task(task_id)
    # No stage written after the end: it would show a finished task still saving.
    assert (ended["status"], ended["stage"], ended["progress"]) == ("success", "done", 100)
    stages = [seen for seen, _ in published[:-1]]  # its start and stages, before its end
    gaps = [later - earlier for earlier, later in zip(stages, stages[1:], strict=False)]
    # Five stages and a start, a few milliseconds apart, before: now 0.5 s apart at least
    # (less what the publishing and the listener's reading may shift a message by).
    assert all(gap > STAGES_EVERY_SECONDS - 0.1 for gap in gaps), published


def test_garbage_fails_the_task_with_a_clear_error_and_the_worker_goes_on(scraping_stack):
    stack = scraping_stack(ESTEIRA_SCRAPE_MAX_RETRIES="1")
    stack.switches(garbage_rate=1.0)
    task = stack.wait_task(stack.api.post(f"/api/v1/scraping/os/{OS_C}").json()["task_id"])
    assert task["status"] == "failed" and task["attempts"] == 2
    assert task["error"] == {
        "code": "portal_error",
        "message": "the portal answered something that is not the record of this OS",
    }
    stack.switches(garbage_rate=0.0)
    assert (
        stack.wait_task(stack.api.post(f"/api/v1/scraping/os/{OS_C}").json()["task_id"])["status"]
        == "success"
    )


def test_an_expired_portal_session_means_logging_in_again(scraping_stack):
    stack = scraping_stack()
    assert (
        stack.wait_task(stack.api.post(f"/api/v1/scraping/os/{OS_A}").json()["task_id"])["status"]
        == "success"
    )
    assert stack.portal.get("/admin/stats").json()["logins"] == 1
    stack.portal.post("/admin/expire-sessions")
    assert (
        stack.wait_task(stack.api.post(f"/api/v1/scraping/os/{OS_B}").json()["task_id"])["status"]
        == "success"
    )
    assert stack.portal.get("/admin/stats").json()["logins"] == 2


def _chromium_under(pid: int) -> list[int]:
    found = []
    for child in descendants(pid):
        try:
            name = Path(f"/proc/{child}/comm").read_text().strip()
        except OSError:
            continue
        if "chrom" in name:
            found.append(child)
    return found


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        (
            {"ESTEIRA_SCRAPE_SOFT_LIMIT_SECONDS": "2", "ESTEIRA_SCRAPE_HARD_LIMIT_SECONDS": "60"},
            "soft_time_limit",
        ),
        (
            {"ESTEIRA_SCRAPE_SOFT_LIMIT_SECONDS": "60", "ESTEIRA_SCRAPE_HARD_LIMIT_SECONDS": "3"},
            "hard_time_limit",
        ),
    ],
)
def test_time_limits_end_a_hung_scrape_and_leave_no_browser_behind(scraping_stack, limits, code):
    stack = scraping_stack(ESTEIRA_SCRAPE_MAX_RETRIES="0", **limits)
    stack.switches(hang_rate=1.0)
    task = stack.wait_task(stack.api.post(f"/api/v1/scraping/os/{OS_A}").json()["task_id"])
    assert task["status"] == "failed" and task["error"]["code"] == code
    worker_pid = stack.workers[0].process.pid
    deadline = time.monotonic() + 20
    while _chromium_under(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _chromium_under(worker_pid) == []
    if code == "hard_time_limit":  # the soft limit is generous here: a new browser has time
        stack.switches(hang_rate=0.0)
        task_id = stack.api.post(f"/api/v1/scraping/os/{OS_B}").json()["task_id"]
        assert stack.wait_task(task_id)["status"] == "success"


def test_fifty_concurrent_lookups_of_five_os_make_exactly_five_scrapes(scraping_stack):
    stack = scraping_stack()
    stack.switches(latency_ms=1500)
    numbers = [str(FIRST_OS + 20 + i) for i in range(5)]

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=str(stack.api.base_url), headers=stack.api.headers, timeout=30
        ) as client:
            return await asyncio.gather(
                *(client.post(f"/api/v1/scraping/os/{numbers[i % 5]}") for i in range(50))
            )

    responses = asyncio.run(storm())
    assert all(r.status_code == 202 for r in responses)
    task_ids = {r.json()["task_id"] for r in responses}
    assert len(task_ids) == 5
    assert sum(r.json()["coalesced"] for r in responses) == 45
    for task_id in task_ids:
        assert stack.wait_task(task_id)["status"] == "success"
    assert stack.portal.get("/admin/stats").json()["lookups"] == 5
    assert _count(stack.engine, ordens_servico) == 5


def test_a_task_is_seen_only_by_the_tenants_that_started_or_joined_it(scraping_stack):
    stack = scraping_stack()
    stack.switches(latency_ms=1500)
    suporte = stack.as_tenant("suporte")
    only_vendas = stack.api.post(f"/api/v1/scraping/os/{OS_B}").json()["task_id"]
    both = stack.api.post(f"/api/v1/scraping/os/{OS_C}").json()["task_id"]

    for path in (f"/api/v1/scraping/tasks/{only_vendas}", f"/api/v1/scraping/tasks/{both}"):
        hidden = suporte.get(path)
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "task_not_found"
        # A long poll on it is refused before any wait (the client would give up first).
        held = suporte.get(path, params={"since": 0, "wait": 20}, timeout=5)
        assert held.status_code == 404 and held.json()["error"]["code"] == "task_not_found"
    assert suporte.get(f"/api/desenvolvimento/scraping-status/{only_vendas}").status_code == 404

    joined = suporte.post(f"/api/v1/scraping/os/{OS_C}").json()
    assert joined["task_id"] == both and joined["coalesced"]  # one scrape serves both tenants
    shared = stack.wait_task(both)
    assert shared["status"] == "success" and shared["shared"] and "owners" not in shared
    assert suporte.get(f"/api/v1/scraping/tasks/{both}").json()["result"] == shared["result"]
    assert [t["task_id"] for t in suporte.get("/api/v1/scraping/tasks").json()] == [both]
    assert {t["task_id"] for t in stack.api.get("/api/v1/scraping/tasks").json()} == {
        only_vendas,
        both,
    }
    stack.wait_task(only_vendas)
    assert httpx.get(f"{stack.api.base_url}/api/v1/scraping/tasks").status_code == 401
    suporte.close()


def test_the_rate_limit_is_shared_by_every_worker(scraping_stack):
    stack = scraping_stack(
        workers=2, ESTEIRA_SCRAPE_RATE_PER_MINUTE="30", ESTEIRA_SCRAPE_RATE_BURST="1"
    )
    task_ids = [
        stack.api.post(f"/api/v1/scraping/os/{FIRST_OS + 40 + i}").json()["task_id"]
        for i in range(4)
    ]
    # One token (the next in 2 s) for four tasks and two idle workers: the others wait in the
    # fair queue. With a bucket per worker, two would have gone at once.
    queues = stack.api.get("/api/v1/queues").json()["queues"]
    assert next(q for q in queues if q["pool"] == "scraper")["ready"] >= 2
    # Each token was spent as its job was fed: no job ran only to be deferred (one attempt each).
    for task_id in task_ids:
        task = stack.wait_task(task_id)
        assert (task["status"], task["attempts"]) == ("success", 1)
    queue = stack.api.get("/api/desenvolvimento/queue-status").json()
    assert queue["queue_info"]["workers_online"] == 2 and queue["status"] == "success"
