"""/livez, /readyz and /metrics against a real redis-server and real databases."""

import pytest

from esteira_testing.components import RedisServer

pytestmark = pytest.mark.integration


def test_livez_answers_without_dependencies(make_client) -> None:
    client = make_client("redis://127.0.0.1:1/0")
    assert client.get("/livez").json() == {"status": "alive"}


def test_ready_when_redis_and_the_database_answer(make_client, redis_url, database_url) -> None:
    response = make_client(redis_url, database_url).get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["redis"]["ok"] and body["checks"]["database"]["ok"]


def test_degraded_but_still_ready_when_redis_dies(
    make_client, own_redis_server: RedisServer
) -> None:
    client = make_client(own_redis_server.url)
    assert client.get("/readyz").json()["status"] == "ready"
    own_redis_server.kill()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["redis"]["ok"] is False
    own_redis_server.start()
    assert client.get("/readyz").json()["status"] == "ready"


def test_not_ready_without_a_database(make_client, redis_url) -> None:
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    response = make_client(redis_url, unreachable).get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"]["ok"] is False
    assert "nobody" not in response.text  # no connection string in the answer


def test_metrics_show_esteira_request_latency_by_route_template(make_client, redis_url) -> None:
    client = make_client(redis_url)
    client.get("/livez")
    client.get("/no/such/route")
    text = client.get("/metrics").text
    assert (
        'esteira_http_request_duration_seconds_count{method="GET",route="/livez",status="200"}'
        in text
    )
    assert 'route="unmatched",status="404"' in text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_openapi_is_published(make_client) -> None:
    schema = make_client("redis://127.0.0.1:1/0").get("/openapi.json").json()
    assert schema["info"]["title"] == "Esteira"
    assert "/readyz" in schema["paths"]
