"""Hostile input of every kind gets a clear 4xx JSON error, never a 5xx."""

import json

import pytest

pytestmark = pytest.mark.integration
SESSIONS = "/api/v1/ruptura/sessions"


@pytest.fixture
def client(make_client, redis_url):
    return make_client(redis_url)


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_a_declared_huge_body_is_refused_before_it_is_read(client) -> None:
    body = json.dumps({"pedidos": ["1"] * 700_000})
    assert (
        _error(
            client.post(SESSIONS, content=body, headers={"content-type": "application/json"}), 413
        )["code"]
        == "body_too_large"
    )


def test_a_streamed_huge_body_is_refused_too(client) -> None:
    def chunks():
        yield b'{"pedidos": ['
        for _ in range(400):
            yield b'"1",' * 2000
        yield b'"1"]}'

    response = client.post(SESSIONS, content=chunks(), headers={"content-type": "application/json"})
    assert _error(response, 413)["message"].startswith("The request body exceeds")


def test_deeply_nested_json_is_a_client_error(client) -> None:
    body = "[" * 200_000 + "]" * 200_000
    response = client.post(SESSIONS, content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    assert "error" in response.json()


@pytest.mark.parametrize(
    "pedidos",
    [
        ["1' OR '1'='1"],
        ["<script>alert(1)</script>"],
        ["a\x00b"],
        ["x" * 41],
        [" "],
        [1.5],
        [{"$ne": None}],
        "100001",
    ],
)
def test_odd_order_numbers_are_refused(client, pedidos) -> None:
    assert (
        _error(client.post(SESSIONS, json={"pedidos": pedidos}), 422)["code"] == "validation_error"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/scraping/os/1;DROP",
        "/api/v1/scraping/os/%2e%2e%2f",
        "/api/v1/scraping/os/１２３",
        "/api/v1/scraping/os/" + "9" * 13,
        "/api/v1/scraping/tasks/../../etc/passwd",
        "/api/v1/ruptura/sessions/" + "g" * 32,
        "/api/v1/ruptura/orders/a%20b",
        "/api/desenvolvimento/scraping-status/%00",
    ],
)
def test_hostile_paths_are_client_errors(client, path) -> None:
    response = client.get(path) if "scraping/os" not in path else client.post(path)
    assert response.status_code in (404, 405, 422), (path, response.status_code)
    assert "error" in response.json()


def test_negative_or_absurd_offsets_are_refused(client) -> None:
    base = f"{SESSIONS}/{'a' * 32}/results"
    for offset in ("-1", "99999999999", "abc", "1e3"):
        assert (
            _error(client.get(base, params={"offset": offset}), 422)["code"] == "validation_error"
        )


@pytest.mark.parametrize(
    "query",
    [
        {"wait": "nan"},
        {"wait": "inf"},
        {"wait": "-1"},
        {"wait": "26"},
        {"wait": "soon"},
        {"since": "nan", "wait": "1"},
        {"since": "-5", "wait": "1"},
    ],
)
def test_a_long_poll_refuses_odd_waits_and_times(client, query) -> None:
    for path in (f"/api/v1/scraping/tasks/{'a' * 32}", f"{SESSIONS}/{'a' * 32}/results"):
        if "since" in query and "scraping" not in path:
            continue  # results follow an offset, not a time
        assert _error(client.get(path, params=query), 422)["code"] == "validation_error"


def test_a_declared_huge_body_under_the_seed_prefixes_says_success_false(client) -> None:
    response = client.post(
        "/api/ruptura/worker/iniciar-processamento",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": str(3 * 1024 * 1024)},
    )
    assert response.status_code == 413
    assert response.json() == {
        "success": False,
        "error": {"code": "body_too_large", "message": "The request body exceeds 2097152 bytes."},
    }


@pytest.mark.parametrize("path", ["/livez/", "/api/v1/queues/", "/ui/"])
def test_a_forged_host_steers_no_redirect(client, path) -> None:
    response = client.get(path, headers={"host": "evil.example"}, follow_redirects=False)
    assert response.status_code in (401, 404)
    assert "location" not in response.headers


def test_the_operator_page_and_static_files_send_security_headers(client) -> None:
    for path in ("/ui", "/static/esteira.js", "/static/ui.css"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        policy = response.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert client.get("/livez").headers["x-content-type-options"] == "nosniff"
