"""CORS: only the configured origins, preflight included, with the key's header allowed and the
request id readable; none by default. (The cross-origin page itself is tested in Chromium in
tests/e2e/test_browser_access.py.)"""

import hashlib

import pytest

from esteira_api.cors import parse_origins

pytestmark = pytest.mark.integration
KEY = "esk_cors-test"
ERP = "https://erp.example"
PREFLIGHT = {
    "Origin": ERP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def test_origins_are_parsed_without_blanks_or_trailing_slashes() -> None:
    assert parse_origins("") == []
    assert parse_origins(" https://a.example/ ,, http://b.example:8443") == [
        "https://a.example",
        "http://b.example:8443",
    ]


def test_a_configured_origin_gets_its_preflight_and_readable_answers(
    make_client, redis_url
) -> None:
    client = make_client(
        redis_url,
        auth_disabled=False,
        api_keys=f"erp:{hashlib.sha256(KEY.encode()).hexdigest()}",
        cors_origins=f"{ERP}, https://other.example",
    )
    preflight = client.options("/api/v1/ruptura/sessions", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ERP
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in preflight.headers

    answer = client.get("/api/v1/queues", headers={"Origin": ERP, "Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ERP
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    # A refusal reaches the page readable too, so it can say "wrong key".
    refused = client.get("/api/v1/queues", headers={"Origin": ERP})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ERP

    stranger = client.options(
        "/api/v1/ruptura/sessions", headers={**PREFLIGHT, "Origin": "https://evil.example"}
    )
    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers


def test_no_origin_is_allowed_by_default(make_client, redis_url) -> None:
    client = make_client(redis_url)
    assert client.options("/api/v1/queues", headers=PREFLIGHT).status_code == 405
    answer = client.get("/api/v1/queues", headers={"Origin": ERP})
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
