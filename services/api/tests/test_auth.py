"""API keys, tenants and the per-tenant rate limit, on a real Redis."""

import pytest
from pydantic import ValidationError

from esteira_api import apikeys
from esteira_api.settings import ApiSettings

KEYS = {"vendas": apikeys.generate_key(), "suporte": apikeys.generate_key()}
ENTRIES = ",".join(f"{tenant}:{apikeys.key_digest(key)}" for tenant, key in KEYS.items())
SESSIONS = "/api/v1/ruptura/sessions"


def _as(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def test_entries_map_digests_to_tenants_and_bad_ones_say_what_is_wrong() -> None:
    key = apikeys.generate_key()
    digest = apikeys.key_digest(key)
    assert key.startswith(apikeys.KEY_PREFIX) and len(key) > 40
    assert apikeys.parse_entries(f" a:{digest}\n\nb:{'0' * 64}, ") == {digest: "a", "0" * 64: "b"}
    for bad, complaint in (
        (f"Vendas:{digest}", "tenant must be"),
        ("vendas:abc", "64 hex digits"),
        (f"vendas:{key}", "64 hex digits"),
        (f"a:{digest},b:{digest}", "another tenant"),
    ):
        with pytest.raises(ValueError, match=complaint):
            apikeys.parse_entries(bad)


def test_the_gateway_refuses_to_start_open_unless_told_to(monkeypatch) -> None:
    monkeypatch.delenv("ESTEIRA_API_KEYS", raising=False)
    monkeypatch.delenv("ESTEIRA_AUTH_DISABLED", raising=False)
    with pytest.raises(ValidationError, match="ESTEIRA_AUTH_DISABLED=true"):
        ApiSettings()
    assert ApiSettings(auth_disabled=True).tenant_for("anything") is None
    settings = ApiSettings(api_keys=ENTRIES)
    assert settings.tenant_for(KEYS["suporte"]) == "suporte"
    assert settings.tenant_for(KEYS["suporte"] + "x") is None
    assert apikeys.key_digest(KEYS["vendas"]) not in repr(settings)


@pytest.fixture
def client(make_client, redis_url):
    return make_client(
        redis_url,
        auth_disabled=False,
        api_keys=ENTRIES,
        tenant_rate_per_second=1000,
        auth_refusal_burst=1000,
    )


integration = pytest.mark.integration


@integration
def test_every_route_but_probes_and_metrics_wants_a_key(client) -> None:
    for path in ("/livez", "/readyz", "/metrics", "/openapi.json", "/static/esteira.js"):
        assert client.get(path).status_code == 200, path
    for method, path in (
        ("GET", "/api/v1/queues"),
        ("POST", SESSIONS),
        ("GET", "/api/v1/ruptura/orders"),
        ("POST", "/api/v1/scraping/os/1"),
        ("GET", "/api/v1/scraping/tasks"),
        ("POST", "/api/ruptura/worker/iniciar-processamento"),
        ("GET", "/api/desenvolvimento/queue-status"),
    ):
        for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "unauthenticated"
            assert response.headers["www-authenticate"] == "Bearer"
        wrong = client.request(method, path, headers={"Authorization": "Bearer esk_nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    compat = client.get("/api/desenvolvimento/queue-status")
    assert compat.json()["success"] is False
    assert client.get("/api/v1/queues", headers=_as("vendas")).status_code == 200


@integration
def test_a_session_belongs_to_the_tenant_that_started_it(client) -> None:
    started = client.post(SESSIONS, json={"pedidos": ["1", "2"]}, headers=_as("vendas"))
    assert started.status_code == 202, started.text
    session_id = started.json()["session_id"]
    base = f"{SESSIONS}/{session_id}"
    for method, path in (
        ("GET", base),
        ("GET", f"{base}/results"),
        ("GET", f"{base}/events"),
        ("DELETE", base),
        ("GET", f"/api/ruptura/worker/status/{session_id}"),
        ("GET", f"/api/ruptura/worker/buscar-resultados/{session_id}"),
    ):
        response = client.request(method, path, headers=_as("suporte"))
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "session_not_found"
    cleared = client.post(
        "/api/ruptura/worker/limpar-cache", json={"session_id": session_id}, headers=_as("suporte")
    )
    assert cleared.status_code == 404
    assert client.get(base, headers=_as("vendas")).json()["total"] == 2  # still there
    assert client.delete(base, headers=_as("vendas")).status_code == 204


@integration
def test_a_tenant_over_its_rate_gets_429_and_the_others_do_not(make_client, redis_url) -> None:
    client = make_client(
        redis_url,
        auth_disabled=False,
        api_keys=ENTRIES,
        tenant_rate_per_second=0.5,
        tenant_rate_burst=3,
    )
    codes = [client.get("/api/v1/queues", headers=_as("vendas")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = client.get("/api/v1/queues", headers=_as("vendas"))
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert client.get("/api/v1/queues", headers=_as("suporte")).status_code == 200
    assert client.get("/livez").status_code == 200
    metrics = client.get("/metrics").text
    assert 'esteira_requests_rejected_total{reason="rate_limited"} 2.0' in metrics


def test_with_redis_down_keys_still_work_and_the_limit_steps_aside(make_client) -> None:
    client = make_client(
        "redis://127.0.0.1:1/0", auth_disabled=False, api_keys=ENTRIES, tenant_rate_burst=1
    )
    codes = {client.get("/api/v1/queues", headers=_as("vendas")).status_code for _ in range(3)}
    assert codes == {200}
    assert client.get("/api/v1/queues").status_code == 401


@integration
def test_the_key_is_checked_before_the_body_is_parsed(client) -> None:
    for body in (b'{"pedidos": [1,', b"[" * 100_000):
        response = client.post(SESSIONS, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthenticated"
    # The same body with a key is parsed, and refused for what it is.
    assert (
        client.post(SESSIONS, content=b'{"pedidos": [1,', headers=_as("vendas")).status_code == 422
    )


@integration
def test_refusals_are_rate_limited_per_address(make_client, redis_url) -> None:
    client = make_client(
        redis_url,
        auth_disabled=False,
        api_keys=ENTRIES,
        auth_refusal_burst=3,
        auth_refusals_per_second=0.01,
    )
    codes = [client.get("/api/v1/queues").status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    refused = client.get("/api/ruptura/worker/status/" + "a" * 32)
    assert refused.json()["success"] is False
    assert refused.json()["error"]["code"] == "too_many_refusals"
    assert int(refused.headers["retry-after"]) >= 1
    assert client.get("/api/v1/queues", headers=_as("vendas")).status_code == 200
    metrics = client.get("/metrics").text
    assert 'esteira_requests_rejected_total{reason="too_many_refusals"} 3.0' in metrics


def test_every_route_that_wants_a_key_is_under_the_checked_prefix() -> None:
    from esteira_api.auth import PROTECTED_PREFIX, authenticated_router
    from esteira_api.main import create_app

    with pytest.raises(ValueError, match="outside /api/"):
        authenticated_router("/internal", "internal")
    with pytest.raises(ValueError, match="outside /api/"):
        authenticated_router("/apix", "internal")
    # OpenAPI documents the key on exactly the operations the middleware checks.
    schema = create_app(ApiSettings(api_keys=ENTRIES)).openapi()
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            documented = operation.get("security") == [{"HTTPBearer": []}]
            assert documented == path.startswith(PROTECTED_PREFIX), path
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
