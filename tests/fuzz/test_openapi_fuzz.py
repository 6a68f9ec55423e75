"""Schemathesis against the gateway's own OpenAPI schema, with real Redis, a real ruptura worker
and a seeded database behind it: no request it generates may get a 5xx."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_core.processes import free_port
from esteira_ruptura.demo import DemoSpec, seed_demo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory):
    from esteira_testing.components import EsteiraProcess, RedisServer

    workdir = tmp_path_factory.mktemp("fuzz")
    database_url = f"sqlite:///{workdir / 'fuzz.db'}"
    engine = create_db_engine(database_url)
    upgrade(engine.url)
    seed_demo(engine, DemoSpec(orders=200, products=40, seed=9))
    engine.dispose()
    redis = RedisServer().start()
    env = {
        "ESTEIRA_REDIS_URL": redis.url,
        "ESTEIRA_DATABASE_URL": database_url,
        "ESTEIRA_RUPTURA_MAX_ORDERS": "500",
    }
    worker_port, api_port = free_port(), free_port()
    processes = [
        EsteiraProcess(
            "worker",
            ["worker", "ruptura"],
            {**env, "ESTEIRA_METRICS_PORT": str(worker_port)},
            workdir,
        ).start(worker_port),
        EsteiraProcess("api", ["api", "--port", str(api_port)], env, workdir).start(api_port),
    ]
    yield f"http://127.0.0.1:{api_port}"
    for process in processes:
        output = process.output()
        process.stop()
        assert "Traceback" not in output, output[-4000:]
    redis.close()


EXAMPLES_PER_OPERATION = 25


def test_no_request_gets_a_server_error(gateway_url) -> None:
    """Every operation but the portal lookup (it would start real scrapes), each with up to
    EXAMPLES_PER_OPERATION generated requests, valid and invalid alike."""
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    sent: list[str] = []
    server_errors: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/api/v1/scraping/os/"):
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case) -> None:
            response = case.call(base_url=gateway_url, timeout=30)
            sent.append(case.operation.label)
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path}: {response.status_code}")

        exercise()
    print(f"schemathesis sent {len(sent)} requests to {len(set(sent))} operations")  # noqa: T201
    assert len(set(sent)) >= 15 and len(sent) > 200
    assert server_errors == []
