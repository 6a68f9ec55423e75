"""A scrape task followed from the outside, as front ends on another origin with their keys
meet it: the gateway answers a task's polls from one read kept between two of its changes, and
none of them may tell, but for speed."""

import hashlib
import time

import pytest

from esteira_scraping import tasks
from esteira_testing.scenarios import on_redis

pytestmark = pytest.mark.integration

ERP, CRM = "https://erp.example", "https://crm.example"
KEYS = {"vendas": "chave-de-vendas-0123456789", "suporte": "chave-de-suporte-0123456789"}


def _start_or_join(redis_url: str, numero_os: str, tenant: str) -> str:
    joined = on_redis(
        redis_url, lambda redis: tasks.start_or_join(redis, numero_os, tenant, active_ttl=600)
    )
    return joined.task_id


def _update(redis_url: str, task_id: str, **fields: object) -> None:
    """A worker's stage: the hash written and the change published."""
    on_redis(redis_url, lambda redis: tasks.update(redis, task_id, **fields))


def test_two_tenants_on_other_origins_follow_one_task_and_see_each_change_a_third_sees_nothing(
    make_client, redis_url, monkeypatch
) -> None:
    # Kept far longer than the test: only a change's message may end a kept read here.
    monkeypatch.setattr("esteira_api.changes.KEPT_SECONDS", 600)
    client = make_client(
        redis_url,
        auth_disabled=False,
        api_keys=",".join(f"{t}:{hashlib.sha256(k.encode()).hexdigest()}" for t, k in KEYS.items()),
        cors_origins=f"{ERP}, {CRM}",
    )
    # The ERP's front end is vendas, the CRM's suporte.
    vendas = {"Authorization": f"Bearer {KEYS['vendas']}", "Origin": ERP}
    suporte = {"Authorization": f"Bearer {KEYS['suporte']}", "Origin": CRM}
    task_id = _start_or_join(redis_url, "424242", "vendas")
    path = f"/api/v1/scraping/tasks/{task_id}"

    first = client.get(path, headers=vendas)  # now kept, without suporte among its owners
    assert first.status_code == 200 and first.headers["access-control-allow-origin"] == ERP
    assert first.json()["shared"] is False
    refused = client.get(path, headers=suporte, params={"since": 0, "wait": 20}, timeout=5)
    assert refused.status_code == 404 and refused.headers["access-control-allow-origin"] == CRM
    seed_refused = client.get(f"/api/desenvolvimento/scraping-status/{task_id}", headers=suporte)
    assert seed_refused.status_code == 404

    assert _start_or_join(redis_url, "424242", "suporte") == task_id  # suporte joins
    joined = client.get(path, headers=suporte)  # not the kept read's 404: read again
    assert joined.status_code == 200 and joined.json()["shared"] is True
    assert "owners" not in joined.text and "vendas" not in joined.text

    # A worker moves the task on; each front end sees the change, on either API.
    seen = first.json()["updated_at"]
    _update(redis_url, task_id, status="in_progress", stage="searching", progress=40)
    deadline = time.monotonic() + 10
    while True:
        polled = client.get(path, headers=vendas).json()
        if polled["stage"] == "searching" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert polled["stage"] == "searching" and polled["updated_at"] > seen
    seed = client.get(f"/api/desenvolvimento/scraping-status/{task_id}", headers=suporte)
    assert seed.status_code == 200 and seed.json()["status"] == "PROGRESS"
    assert seed.json()["progress"] == 40

    # A long poll since what it has seen answers at the next change, not after its wait.
    _update(redis_url, task_id, stage="extracting", progress=70)
    held = client.get(
        path, headers=suporte, params={"since": polled["updated_at"], "wait": 20}, timeout=10
    )
    assert held.status_code == 200 and held.json()["stage"] == "extracting"

    # Without a key: 401, before anything is read.
    assert client.get(path, headers={"Origin": ERP}).status_code == 401
