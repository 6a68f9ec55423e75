"""What a dead or draining worker leaves behind, tried as an SRE would: SIGKILL a worker in the
middle of its jobs, SIGTERM one with a queue behind it, start one while Redis is down, block a
worker's event loop. Nothing is lost, nothing runs twice, no browser survives its owner, no key
is left without an expiry."""

import asyncio
import functools
import os
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import pytest
import redis

from esteira_cli.processes import ManagedProcess, free_port
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_core.jobs import RUPTURA_BATCH_SIZE, RUPTURA_BATCHES_PER_BIG_JOB, Pool
from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings
from esteira_portal.records import FIRST_OS
from esteira_ruptura.service import SessionAnalysis
from esteira_ruptura.worker import TRIES
from esteira_scraping.browser import OWN_FILES
from esteira_scraping.processes import descendants
from esteira_testing.components import RedisServer, seeded_database, tables_locked
from esteira_testing.plugin import DEMO_PORTAL_PASSWORD, DEMO_PORTAL_USERNAME
from esteira_testing.ruptura import session_results
from esteira_testing.waiting import alive, wait_until

pytestmark = pytest.mark.integration
REFERENCE = "2026-03-02"


def _keys_without_expiry(redis_url: str) -> list[str]:
    store = redis.Redis.from_url(redis_url)
    return sorted(
        key.decode() for key in store.scan_iter("esteira:*", count=1000) if store.ttl(key) == -1
    )


class Stack:
    def __init__(self, esteira_processes, env: dict[str, str]) -> None:
        self.start = esteira_processes
        self.env = {"ESTEIRA_AUTH_DISABLED": "true", "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5"}
        self.env.update(env)
        port = free_port()
        self.start("api", ["api", "--port", str(port)], self.env, port=port)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def worker(self, name: str, pool: str, **env: str):
        port = free_port()
        worker_env = {**self.env, **env, "ESTEIRA_METRICS_PORT": str(port)}
        worker = self.start(name, ["worker", pool], worker_env, port=port)
        worker.metrics_port = port
        return worker

    def processed(self, session_id: str) -> int:
        return self.api.get(f"/api/v1/ruptura/sessions/{session_id}").json()["processed"]

    def results(self, session_id: str, timeout: float = 60) -> list[dict]:
        return session_results(self.api, session_id, timeout)

    def numbers(self, session_id: str, timeout: float = 60) -> list[str]:
        return [result["num_pedido"] for result in self.results(session_id, timeout)]


CARTEIRA_TABLES = (
    "carteira_itens",
    "estoque",
    "programacao_producao",
    "saidas_previstas",
    "carteira_versao",
)


def test_a_sigkilled_workers_batches_run_again_once_it_is_silent_not_after_their_timeout(
    redis_url, tmp_path, esteira_processes
):
    orders = 10_000  # long enough to be killed in the middle of, however fast it runs
    stack = Stack(
        esteira_processes,
        {
            "ESTEIRA_REDIS_URL": redis_url,
            "ESTEIRA_DATABASE_URL": seeded_database(
                f"sqlite:///{tmp_path / 'r.db'}", orders=orders, products=60
            ),
            # Far longer than this test may take: only the heartbeats can free the batches.
            "ESTEIRA_JOB_TIMEOUT_SECONDS": "600",
            "ESTEIRA_JOB_COMPLETION_WAIT_SECONDS": "610",
        },
    )
    doomed = stack.worker("doomed", "ruptura")
    body = {"all": True, "reference_date": REFERENCE}
    session_id = stack.api.post("/api/v1/ruptura/sessions", json=body).json()["session_id"]
    wait_until(lambda: stack.processed(session_id) > 0, 60, "the first worker never started")
    os.kill(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(10)
    assert stack.processed(session_id) < orders, "killed after the session ended"

    stack.worker("survivor", "ruptura")
    # Its batches were held for a 600 s timeout + 10 s: only its silence can have freed them.
    numbers = stack.numbers(session_id, timeout=120)
    assert len(numbers) == len(set(numbers)) == orders
    assert _keys_without_expiry(redis_url) == []


def test_a_job_failing_on_every_try_ends_its_orders_in_error_not_its_session_in_limbo(
    redis_url, tmp_path, esteira_processes
):
    """The ruptura worker cannot reach the carteira's database (nothing listens where its URL
    points; a password in it). Each try of the session's job fails and is tried again later;
    its last try writes its orders in error, so the session ends, every order once, instead of
    waiting forever for a job arq dropped. The password is in no result and no log line."""
    database_url = seeded_database(f"sqlite:///{tmp_path / 'f.db'}", orders=50, products=20)
    stack = Stack(
        esteira_processes, {"ESTEIRA_REDIS_URL": redis_url, "ESTEIRA_DATABASE_URL": database_url}
    )
    orders = [str(100001 + i) for i in range(30)]
    body = {"pedidos": orders, "reference_date": REFERENCE}
    session_id = stack.api.post("/api/v1/ruptura/sessions", json=body).json()["session_id"]
    password = "pw-" + os.urandom(8).hex()
    unreachable = f"postgresql+psycopg://esteira:{password}@127.0.0.1:{free_port()}/carteira"
    worker = stack.worker("cut-off", "ruptura", ESTEIRA_DATABASE_URL=unreachable)
    results = stack.results(session_id, timeout=90)
    assert sorted(r["num_pedido"] for r in results) == orders
    assert {r["status"] for r in results} == {"erro"}
    assert password not in str(results)
    output = worker.output()
    assert "it will be tried again" in output and "written in error" in output
    assert password not in output


def _session_on_postgresql(redis_url, postgres_server, esteira_processes):
    """A gateway on a PostgreSQL carteira (no standby serving for 10 minutes) and a 30-order
    session, queued: the stack, the database's URL, the orders and the session's id."""
    database_url = seeded_database(postgres_server.create_database(), orders=50, products=20)
    stack = Stack(
        esteira_processes,
        {
            "ESTEIRA_REDIS_URL": redis_url,
            "ESTEIRA_DATABASE_URL": database_url,
            "ESTEIRA_RUPTURA_GRACE_SECONDS": "600",
        },
    )
    orders = [str(100001 + i) for i in range(30)]
    body = {"pedidos": orders, "reference_date": REFERENCE}
    session_id = stack.api.post("/api/v1/ruptura/sessions", json=body).json()["session_id"]
    return stack, database_url, orders, session_id


def test_a_job_past_its_time_on_every_try_ends_its_orders_in_error_not_dropped_by_arq(
    redis_url, postgres_server, esteira_processes
):
    """Another transaction holds the carteira's tables for longer than the job's timeout: each
    try waits for them until the job's own deadline, short of arq's timeout, and is tried again
    later; its last try writes its orders in error, so the session ends. (A job arq timed out
    was dropped with no retry, and its session waited forever.) Its statements stop waiting for
    the lock with their job."""
    stack, database_url, orders, session_id = _session_on_postgresql(
        redis_url, postgres_server, esteira_processes
    )
    with tables_locked(database_url, *CARTEIRA_TABLES):
        worker = stack.worker(
            "waiting",
            "ruptura",
            ESTEIRA_JOB_TIMEOUT_SECONDS="3",
            ESTEIRA_JOB_COMPLETION_WAIT_SECONDS="4",
        )
        results = stack.results(session_id, timeout=90)
        # Nor does any try's statement still wait for the lock (each held a thread of the
        # worker and a backend of the database for as long as the lock was held).
        wait_until(
            lambda: _waiting_for_locks(database_url) == 0, 15, "statements still wait for it"
        )
    assert sorted(r["num_pedido"] for r in results) == orders
    assert {r["status"] for r in results} == {"erro"}
    output = worker.output()
    assert "TimeoutError" in output and "given up" in output


def test_a_load_holding_the_carteira_longer_than_a_read_takes_delays_a_session_not_fails_it(
    redis_url, postgres_server, esteira_processes
):
    """A team's nightly load holds the carteira's tables, its version among them, for longer
    than a version's read takes (5 s, when a job whose session reads a judged carteira goes on
    without it) but less than a job's timeout: a session that needs the version waits for the
    load on its job's first try, and every order is analysed. Nothing hung: failing the job
    after 5 s would have spent its tries on a lock."""
    stack, database_url, orders, session_id = _session_on_postgresql(
        redis_url, postgres_server, esteira_processes
    )
    with tables_locked(database_url, *CARTEIRA_TABLES):
        worker = stack.worker("patient", "ruptura")
        wait_until(lambda: _waiting_for_locks(database_url) > 0, 30, "no job waited for it")
        time.sleep(SessionAnalysis.PROMPT_VERSION_SECONDS + 2)  # the load goes on past that
    results = stack.results(session_id, timeout=60)
    assert sorted(r["num_pedido"] for r in results) == orders
    assert "erro" not in {r["status"] for r in results}
    assert "tried again" not in worker.output()


def _waiting_for_locks(database_url: str) -> int:
    """The database's statements waiting for a lock, as a DBA sees them."""
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).scalar_one()
    finally:
        engine.dispose()


def test_a_job_whose_worker_dies_in_it_every_time_ends_its_orders_in_error(
    redis_url, postgres_server, esteira_processes
):
    """A job that takes its worker down each time it runs (here: SIGKILL while it reads) is
    run by the next worker, five times; the sixth writes its orders in error without running
    it, so the session ends instead of waiting forever for a job arq dropped unseen."""
    stack, database_url, orders, session_id = _session_on_postgresql(
        redis_url, postgres_server, esteira_processes
    )
    store = redis.Redis.from_url(redis_url)
    running = lambda: list(store.scan_iter("arq:in-progress:*"))  # noqa: E731
    queue = lambda: store.zrange("arq:queue:ruptura", 0, -1, withscores=True)  # noqa: E731

    def counted(runs: int) -> bool:
        """The job runs, and arq has counted this run: it takes the job (in progress) before it
        counts the run, and a worker killed in between has not used a try."""
        return any(
            int(store.get(f"arq:retry:{key.decode().rpartition(':')[2]}") or 0) >= runs
            for key in running()
        )

    with tables_locked(database_url, *CARTEIRA_TABLES):
        for n in range(TRIES):
            doomed = stack.worker(f"doomed-{n}", "ruptura")
            try:
                wait_until(functools.partial(counted, n + 1), 60, f"try {n + 1} never started")
                os.kill(doomed.process.pid, signal.SIGKILL)
                doomed.process.wait(10)
                wait_until(lambda: not running(), 30, "the dead worker's job was never freed")
            except AssertionError as failure:
                state = f"queue {queue()}, in progress {running()}"
                raise AssertionError(f"{failure}; {state}") from None
        last = stack.worker("last", "ruptura")
        results = stack.results(session_id, timeout=60)
    assert sorted(r["num_pedido"] for r in results) == orders
    assert {r["status"] for r in results} == {"erro"}
    assert "abandoned" in last.output() and "given up" in last.output()


def test_a_worker_whose_loop_started_again_after_redis_was_away_still_judges_the_carteira(
    own_redis_server, tmp_path, esteira_processes
):
    """Redis away for longer than a worker rides out: its arq loop ends, and starts again once
    Redis is back. A session big enough to read the judged carteira is then judged and served
    by it, every order analysed (its judges were stopped for good with the old loop, so every
    judgement it claimed stopped at once and the session's orders ended in error)."""
    orders = 1200  # at least WHOLE_CARTEIRA_FROM: the session reads the judged carteira
    database_url = seeded_database(f"sqlite:///{tmp_path / 'j.db'}", orders=orders, products=60)
    stack = Stack(
        esteira_processes,
        {"ESTEIRA_REDIS_URL": own_redis_server.url, "ESTEIRA_DATABASE_URL": database_url},
    )
    worker = stack.worker("ruptura", "ruptura")
    own_redis_server.kill()
    wait_until(lambda: "lost Redis" in worker.output(), 60, "the worker's loop never ended")
    own_redis_server.start()
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{worker.metrics_port}/readyz").status_code == 200,
        60,
        "the worker never served its queue again",
    )
    # The gateway saw Redis away too: until it has seen it back, a session is answered inline.
    wait_until(
        lambda: {q["mode"] for q in stack.api.get("/api/v1/queues").json()["queues"]} == {"queue"},
        30,
        "the gateway never went back to its queues",
    )
    body = {"all": True, "reference_date": REFERENCE}
    session_id = stack.api.post("/api/v1/ruptura/sessions", json=body).json()["session_id"]
    results = stack.results(session_id, timeout=90)
    assert len(results) == orders
    assert {r["status"] for r in results} == {"analisado"}


def test_a_draining_worker_starts_nothing_new_and_hands_its_queue_back(
    redis_url, tmp_path, esteira_processes
):
    """A 20,000-order session: its worker is told to stop (SIGTERM) in the middle of it. The
    worker is frozen (SIGSTOP) for the count taken when the signal is sent to be exact."""
    orders = 20_000
    stack = Stack(
        esteira_processes,
        {
            "ESTEIRA_REDIS_URL": redis_url,
            "ESTEIRA_DATABASE_URL": seeded_database(
                f"sqlite:///{tmp_path / 'd.db'}", orders=orders, products=60
            ),
            "ESTEIRA_WORKER_CONCURRENCY": "2",
        },
    )
    draining = stack.worker("draining", "ruptura")
    body = {"all": True, "reference_date": REFERENCE}
    session_id = stack.api.post("/api/v1/ruptura/sessions", json=body).json()["session_id"]
    wait_until(lambda: stack.processed(session_id) > 0, 60, "the worker never started")
    os.kill(draining.process.pid, signal.SIGSTOP)
    at_signal = stack.processed(session_id)
    os.kill(draining.process.pid, signal.SIGTERM)
    os.kill(draining.process.pid, signal.SIGCONT)
    assert draining.process.wait(60) == 0
    after = stack.processed(session_id)
    # It ends at most the copies its two running jobs had begun (a copy takes what is judged
    # of a job's batches in one call), never the queue behind them.
    most = 2 * RUPTURA_BATCHES_PER_BIG_JOB * RUPTURA_BATCH_SIZE
    assert after <= at_signal + most < orders

    stack.worker("next", "ruptura")
    numbers = stack.numbers(session_id, timeout=120)
    assert len(numbers) == len(set(numbers)) == orders


def _scrape_killed_mid_lookup(redis_url, tmp_path, esteira_processes, demo_portal, **env: str):
    """A lookup whose scraper is SIGKILLed while it drives the portal (slowed down for it);
    returns the stack, with the portal fast again, and the task's status."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(create_db_engine(url).url)
    portal = httpx.Client(base_url=demo_portal, timeout=10)
    switches = portal.get("/admin/switches").json()
    portal.put("/admin/switches", json={**switches, "latency_ms": 4000}).raise_for_status()
    stack = Stack(
        esteira_processes,
        {
            "ESTEIRA_REDIS_URL": redis_url,
            "ESTEIRA_DATABASE_URL": url,
            "ESTEIRA_PORTAL_URL": demo_portal,
            "ESTEIRA_PORTAL_USERNAME": DEMO_PORTAL_USERNAME,
            "ESTEIRA_PORTAL_PASSWORD": DEMO_PORTAL_PASSWORD,
            **env,
        },
    )
    doomed = stack.worker("doomed", "scraper")
    task_id = stack.api.post(f"/api/v1/scraping/os/{FIRST_OS}").json()["task_id"]
    task = lambda: stack.api.get(f"/api/v1/scraping/tasks/{task_id}").json()  # noqa: E731
    wait_until(lambda: task()["stage"] == "searching", 60, "the scrape never reached the portal")
    browsers = descendants(doomed.process.pid)
    assert browsers
    os.kill(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(10)
    wait_until(lambda: not any(alive(pid) for pid in browsers), 10, "its browser survived it")
    portal.put("/admin/switches", json=switches).raise_for_status()
    return stack, task


def test_a_sigkilled_scrapers_task_is_retried_by_the_next_one_and_its_browser_dies(
    redis_url, tmp_path, esteira_processes, demo_portal
):
    # A pod's /tmp, which outlives its containers' restarts (short: Chromium's socket is in it).
    pod_tmp = Path(tempfile.mkdtemp(prefix="pod-"))
    stack, task = _scrape_killed_mid_lookup(
        redis_url, tmp_path, esteira_processes, demo_portal, TMPDIR=str(pod_tmp)
    )
    assert list(pod_tmp.iterdir())  # what the killed worker's browser left
    stack.worker("survivor", "scraper")
    # The scrape's 330 s job timeout has not passed: its worker's silence freed it, and the
    # lease of its dead scraper was taken over.
    ended = wait_until(lambda: (t := task())["status"] in ("success", "failed") and t, 90, "stuck")
    assert ended["status"] == "success" and ended["result"]["data"]["numero_os"] == str(FIRST_OS)
    assert ended["attempts"] == 2
    assert _keys_without_expiry(redis_url) == []
    # The survivor's first browser removed the killed one's profile (a few MiB): the profiles
    # left belong to live processes.
    left = sorted(entry.name for entry in pod_tmp.iterdir())
    shutil.rmtree(pod_tmp, ignore_errors=True)
    owners = [OWN_FILES.match(name) for name in left if name.startswith("esteira-")]
    assert owners and all(found and alive(int(found[1])) for found in owners), left


def test_a_lookup_whose_every_allowed_attempt_died_with_its_worker_fails_as_abandoned(
    redis_url, tmp_path, esteira_processes, demo_portal
):
    """No retry allowed: the attempt its killed worker began was its one attempt, so the next
    worker ends the task with a clear error instead of driving the portal again (a lookup that
    takes its worker down each time would otherwise take down one worker after another)."""
    stack, task = _scrape_killed_mid_lookup(
        redis_url, tmp_path, esteira_processes, demo_portal, ESTEIRA_SCRAPE_MAX_RETRIES="0"
    )
    survivor = stack.worker("survivor", "scraper")
    ended = wait_until(lambda: (t := task())["status"] in ("success", "failed") and t, 90, "stuck")
    assert ended["status"] == "failed" and ended["error"]["code"] == "abandoned"
    assert "last allowed attempt (1) never ended" in ended["error"]["message"]
    assert ended["attempts"] == 1
    assert not descendants(survivor.process.pid), "it started a browser for it"
    assert _keys_without_expiry(redis_url) == []


def test_a_worker_started_without_redis_is_alive_and_serves_once_redis_comes(tmp_path):
    """Its probes answer at once, /readyz only once it serves; /livez fails while its event
    loop is blocked (a job that never yields), although the probes' thread still answers."""
    redis_port, probe_port = free_port(), free_port()
    script = tmp_path / "blocking_worker.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            from arq.worker import func
            from esteira_core import worker
            from esteira_core.jobs import Pool

            async def block(ctx, payload):
                time.sleep(30)  # holds the event loop: what liveness must notice

            class WorkerSettings:
                functions = [func(block, name="block"), func(worker.canary, name="canary")]
                queue_name = Pool.RUPTURA.queue
                max_jobs = 1
                job_timeout = 60
                job_completion_wait = 70
                poll_delay = 0.05

            worker.run(WorkerSettings, Pool.RUPTURA, default_metrics_port=0)
            """
        )
    )
    env = {
        **os.environ,
        "ESTEIRA_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "ESTEIRA_METRICS_PORT": str(probe_port),
        "ESTEIRA_METRICS_HOST": "127.0.0.1",
        "ESTEIRA_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    }
    process = ManagedProcess("worker", [sys.executable, str(script)], env=env).start()
    server = None
    try:
        process.wait_for_port(probe_port, 30)
        probe = httpx.Client(base_url=f"http://127.0.0.1:{probe_port}", timeout=5)
        assert probe.get("/livez").status_code == 200
        assert probe.get("/readyz").status_code == 503
        server = RedisServer(port=redis_port).start()
        wait_until(lambda: probe.get("/readyz").status_code == 200, 60, "never served its queue")
        asyncio.run(_enqueue(f"redis://127.0.0.1:{redis_port}/0", "block"))
        blocked = wait_until(lambda: probe.get("/livez").status_code == 503, 30, "never stalled")
        assert blocked and probe.get("/livez").json()["status"] == "stalled"
    finally:
        process.stop(grace=2)
        if server is not None:
            server.close()


async def _enqueue(redis_url: str, function: str) -> None:
    client = create_redis(CoreSettings(redis_url=redis_url))
    await client.enqueue_job(function, payload={}, _queue_name=Pool.RUPTURA.queue)
    await client.aclose()
