"""The load bench's own witness: its listener sees what the workers' code publishes on a real
redis-server, and each request is judged by it (answered at once, held, or ran out its wait),
never by what the gateway says of itself."""

import asyncio
import importlib
import math
import time
from pathlib import Path
from types import ModuleType

import orjson
import pytest
import uvloop

from esteira_cli.processes import free_port
from esteira_core import keys
from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings
from esteira_ruptura import sessions
from esteira_scraping import tasks
from esteira_testing.ruptura import record_session

pytestmark = pytest.mark.integration
SESSION = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def bench_load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # The bench is not an installed package; its listener's process imports it by name too.
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2]))
    return importlib.import_module("bench.bench_load")


async def _publish(redis_url: str) -> str:
    """A session's two batches and a scrape task's update and end, as the workers write them;
    returns the task id."""
    redis = create_redis(CoreSettings(redis_url=redis_url))
    await record_session(redis, SESSION, total=2, batches=2)
    joined = await tasks.start_or_join(redis, "2024001", "t", active_ttl=60)
    await sessions.record_batch(redis, SESSION, 0, [b'{"num_pedido": "1"}'])
    await tasks.update(redis, joined.task_id, status="in_progress", stage="opening")
    await sessions.record_batch(redis, SESSION, 1, [b'{"num_pedido": "2"}'])
    await tasks.finish(redis, joined.task_id, "2024001", status="success", stage="done")
    await redis.aclose()
    return joined.task_id


def test_the_listener_records_every_change_the_workers_publish_as_a_version(
    bench_load: ModuleType, redis_url: str, tmp_path: Path
) -> None:
    before = time.monotonic()
    with bench_load.ChangeListener(redis_url, tmp_path) as listener:
        task_id = asyncio.run(_publish(redis_url))
        time.sleep(0.5)  # the listener's process writes what it has seen
    changes = listener.changes()

    batches = changes[keys.ruptura_session_events(SESSION)]
    assert [version for _, version in batches] == [1.0, 2.0]  # results stored after each
    updated, finished = changes[keys.scrape_task_events(task_id)]
    assert updated[1] > before and finished[1] == math.inf
    seen = [at for at, _ in (*batches, updated, finished)]
    assert all(before < at < time.monotonic() for at in seen)
    assert sorted(seen) == [batches[0][0], updated[0], batches[1][0], finished[0]]


def test_each_request_is_judged_by_when_the_listener_saw_its_change(
    bench_load: ModuleType,
) -> None:
    channel = "esteira:ruptura:session:s:events"
    changes = {channel: [(10.0, 20.0), (12.0, 40.0)]}
    poll = bench_load.Poll
    judged = bench_load._judge(
        [
            poll("POST", sent=9.0, received=9.2),
            # waited from 9.5 for the batch published at 10.0; answered at 10.05
            poll("GET", sent=9.5, received=10.05, channel=channel, had=0, got=20),
            # asked at 12.5 for what was published at 12.0: it answered at once
            poll("GET", sent=12.5, received=12.52, channel=channel, had=20, got=40),
            # nothing new: the wait ran out
            poll("GET", sent=13.0, received=33.0, channel=channel, had=40, got=40),
            # a change the listener never saw is counted, not guessed
            poll("GET", sent=40.0, received=40.1, channel=channel, had=40, got=60),
        ],
        changes,
    )

    latencies = dict(judged.latencies)
    assert latencies[("POST", bench_load.AT_ONCE)] == pytest.approx([0.2])
    assert latencies[("GET", bench_load.HELD)] == pytest.approx([0.05])  # from the change
    assert latencies[("GET", bench_load.AT_ONCE)] == pytest.approx([0.02, 0.1])
    assert latencies[("GET", bench_load.RAN_OUT)] == pytest.approx([20.0])
    assert judged.change_to_client[bench_load.HELD] == pytest.approx([0.05])
    assert judged.change_to_client[bench_load.AT_ONCE] == pytest.approx([0.52])
    assert judged.unmatched == 1


def test_the_load_client_reads_each_answer_whole_on_a_kept_alive_connection(
    bench_load: ModuleType, esteira_processes
) -> None:
    """The bench's own HTTP client against a real uvicorn (the demo portal's), on uvloop as
    the bench runs it: each answer read whole and given to its own request, a JSON body sent,
    one connection kept alive for requests one after another, and none kept past its answer
    when the server closes it."""
    from bench.http_client import HttpClient

    port = free_port()
    esteira_processes("portal", ["portal", "--port", str(port)], {}, port=port)

    async def scenario() -> tuple[list[tuple[int, bytes]], int, dict]:
        client = HttpClient("127.0.0.1", port)
        answers = []
        for path in ("/healthz", "/no-such-page", "/healthz"):
            answer = await client.request("GET", path, {"Accept": "application/json"})
            answers.append((answer.status, answer.body))
        kept = len(client.idle)
        switches = orjson.loads((await client.request("GET", "/admin/switches", {})).body)
        changed = {**switches, "latency_ms": 7}
        put = await client.request("PUT", "/admin/switches", {}, orjson.dumps(changed))
        client.close()
        return answers, kept, orjson.loads(put.body)

    answers, kept, written = uvloop.run(scenario())
    assert answers[0] == (200, b'{"status":"ok"}') and answers[2] == answers[0]
    assert answers[1][0] == 404
    assert kept == 1  # three requests, one connection
    assert written["latency_ms"] == 7


def test_a_scrape_the_portals_errors_outlasted_counts_against_success_not_as_error(bench_load):
    def failed(code: str, message: str) -> dict:
        return {"status": "failed", "error": {"code": code, "message": message}}

    injected = failed("portal_error", bench_load.INJECTED_PORTAL_ERROR)
    late = failed("portal_error", "the portal did not answer in time")
    not_found = failed("not_found", "OS not found")
    scraped = {"status": "success", "error": None}
    outcome = bench_load._scrape_outcome
    assert outcome(True, injected) == outcome(False, injected) == "failed"  # the portal's
    assert outcome(True, scraped) == "success" and outcome(False, not_found) == "success"
    # Esteira's own failures, or wrong answers, are errors whatever the number.
    assert outcome(True, late) == outcome(False, late) == "wrong"
    assert outcome(False, scraped) == "wrong" and outcome(True, not_found) == "wrong"
