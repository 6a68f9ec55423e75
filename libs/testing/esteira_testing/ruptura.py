"""A ruptura session recorded as the gateway records one, for tests that drive its batches by
hand (as a worker would) without starting it through the gateway; and a session's results
followed through the API to its end, as a client does."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import httpx
from redis.asyncio import Redis

from esteira_core import fair, jobs
from esteira_core.jobs import Pool, RupturaMode
from esteira_ruptura import sessions

REFERENCE = date(2026, 3, 2)


async def record_session(
    redis: Redis,
    session_id: str,
    *,
    total: int,
    batches: int,
    batches_per_job: int = jobs.RUPTURA_BATCHES_PER_JOB,
    mode: RupturaMode = RupturaMode.INDEPENDENT,
    reference_date: date = REFERENCE,
) -> None:
    """Records session `session_id` of tenant "t" (queue path, the default 28-day horizon and
    7-day window), as the gateway does but with no job."""
    record = sessions.record(
        session_id=session_id,
        owner="t",
        total=total,
        batches=batches,
        batches_per_job=batches_per_job,
        mode=mode,
        path="queue",
        reference_date=reference_date,
        horizon_days=28,
        window_days=7,
    )
    queue = fair.FairQueue(Pool.RUPTURA, window=1, heartbeat_interval=1.0)
    quota = fair.Quota(total, "orders", 1)
    await fair.submit(redis, queue, jobs.RUPTURA_ANALYSE_BATCH, [], "t", quota, record)


def session_results(api: httpx.Client, session_id: str, timeout: float = 60) -> list[Any]:
    """Every result of the session, read with long polls as a client reads them, once it is
    done; fails the test if it is not done within `timeout` seconds."""
    results: list[Any] = []
    offset = 0
    deadline = time.monotonic() + timeout
    while True:
        page = api.get(
            f"/api/v1/ruptura/sessions/{session_id}/results",
            params={"offset": offset, "wait": 5, "limit": 5000},
        ).json()
        results += page["results"]
        offset = page["next_offset"]
        if page["done"]:
            return results
        assert time.monotonic() < deadline, f"the session stopped at {offset}"
