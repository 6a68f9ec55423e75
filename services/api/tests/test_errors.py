"""Every error is the same JSON envelope, never a stack trace."""

import pytest
from fastapi import Query

from esteira_api.errors import ApiError
from esteira_api.main import create_app
from esteira_api.settings import ApiSettings


def _assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert "Traceback" not in response.text
    return error


@pytest.fixture
def client(make_client, tmp_path):
    app = create_app(
        ApiSettings(
            redis_url="redis://127.0.0.1:1/0",
            database_url=f"sqlite:///{tmp_path / 'api.db'}",
            auth_disabled=True,
        )
    )

    async def explode() -> None:
        raise RuntimeError("secret internal detail")

    async def refuse() -> None:
        raise ApiError(409, "conflict", "Already running.", headers={"Retry-After": "3"})

    async def typed(limit: int = Query(ge=1)) -> dict:
        return {"limit": limit}

    app.add_api_route("/test/explode", explode)
    app.add_api_route("/test/refuse", refuse)
    app.add_api_route("/test/typed", typed)
    return make_client("redis://127.0.0.1:1/0", app=app)


def test_404(client) -> None:
    _assert_envelope(client.get("/nowhere"), 404, "not_found")


def test_405(client) -> None:
    _assert_envelope(client.delete("/livez"), 405, "method_not_allowed")


def test_422_says_where_and_what(client) -> None:
    error = _assert_envelope(client.get("/test/typed?limit=0"), 422, "validation_error")
    assert error["message"].startswith("query.limit")
    assert error["details"][0]["loc"] == ["query", "limit"]


def test_500_hides_the_exception(client) -> None:
    response = client.get("/test/explode")
    _assert_envelope(response, 500, "internal_error")
    assert "secret internal detail" not in response.text


def test_api_errors_keep_their_status_code_and_headers(client) -> None:
    response = client.get("/test/refuse")
    _assert_envelope(response, 409, "conflict")
    assert response.headers["retry-after"] == "3"


def test_every_answer_has_a_request_id(client) -> None:
    assert len(client.get("/livez").headers["x-request-id"]) == 32
    echoed = client.get("/livez", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    hostile = client.get("/livez", headers={"x-request-id": "a <script>"})
    assert hostile.headers["x-request-id"] != "a <script>"
