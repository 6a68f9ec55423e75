from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from esteira_api.main import create_app
from esteira_api.settings import ApiSettings
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade


@pytest.fixture
def make_client(tmp_path) -> Iterator[Callable[..., TestClient]]:
    """A gateway on a real Redis and a real (migrated) database, through Starlette's client."""
    clients: list[TestClient] = []

    def make(
        redis_url: str,
        database_url: str | None = None,
        app: FastAPI | None = None,
        **settings_fields: object,
    ) -> TestClient:
        database_url = database_url or f"sqlite:///{tmp_path / 'api.db'}"
        if database_url.startswith("sqlite"):
            engine = create_db_engine(database_url)
            upgrade(engine.url)
            engine.dispose()
        fields = {"auth_disabled": True, **settings_fields}  # the auth tests switch it on
        settings = ApiSettings(redis_url=redis_url, database_url=database_url, **fields)
        client = TestClient(app or create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
