"""Schemathesis against the gateway's own OpenAPI schema, with real Redis, a real ruptura worker
and a seeded database behind it: no request it generates may get a 5xx."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from esteira_testing.components import LocalStack, seeded_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fuzz")
    database_url = seeded_database(f"sqlite:///{workdir / 'fuzz.db'}", orders=200, products=40)
    with LocalStack(workdir, database_url, ESTEIRA_RUPTURA_MAX_ORDERS="500") as stack:
        stack.worker("ruptura")
        yield stack.gateway()
        for process in stack.processes:
            assert "Traceback" not in process.output(), process.output()[-4000:]


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
