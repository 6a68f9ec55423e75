"""Schemathesis against the gateway's own OpenAPI schema, with real Redis, a real ruptura worker
and a seeded database behind it, authenticated as a tenant: no request it generates may get a
5xx, and every answer must be one the schema documents (status, content type, body, headers)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.core.failures import FailureGroup

from esteira_api.apikeys import generate_key, key_digest
from esteira_testing.components import LocalStack, seeded_database

pytestmark = pytest.mark.integration
API_KEY = generate_key()
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.ignored_auth,  # the same request without the key must be refused
]


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fuzz")
    database_url = seeded_database(f"sqlite:///{workdir / 'fuzz.db'}", orders=200, products=40)
    with LocalStack(
        workdir,
        database_url,
        ESTEIRA_RUPTURA_MAX_ORDERS="500",
        ESTEIRA_API_KEYS=f"fuzz:{key_digest(API_KEY)}",
        ESTEIRA_TENANT_RATE_PER_SECOND="0",
        # ignored_auth sends each request again without the key, hundreds from one address:
        # every one of them must be a 401, not the 429 of too many refusals.
        ESTEIRA_AUTH_REFUSAL_BURST="100000",
    ) as stack:
        stack.worker("ruptura")
        yield stack.gateway()
        for process in stack.processes:
            assert "Traceback" not in process.output(), process.output()[-4000:]


EXAMPLES_PER_OPERATION = 25


def test_every_answer_is_documented_and_none_is_a_server_error(gateway_url) -> None:
    """Every operation but the portal lookup (it would start real scrapes), each with up to
    EXAMPLES_PER_OPERATION generated requests, valid and invalid alike."""
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    sent: list[str] = []
    violations: list[str] = []
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
            headers = {"Authorization": f"Bearer {API_KEY}"}
            response = case.call(base_url=gateway_url, headers=headers, timeout=30)
            sent.append(case.operation.label)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except (AssertionError, FailureGroup) as failure:
                violations.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    + str(failure).splitlines()[0]
                )

        exercise()
    print(f"schemathesis sent {len(sent)} requests to {len(set(sent))} operations")  # noqa: T201
    assert len(set(sent)) >= 15 and len(sent) > 200
    assert violations == []
