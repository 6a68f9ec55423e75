"""One batch of a session, from payload to stored results: what a ruptura job does, and what
the gateway's inline path does too."""

from __future__ import annotations

import asyncio

import orjson
from redis.asyncio import Redis
from sqlalchemy import Engine

from esteira_core.jobs import RupturaBatchPayload
from esteira_ruptura import sessions
from esteira_ruptura.projection import Horizon
from esteira_ruptura.service import SessionCache


def horizon_of(batch: RupturaBatchPayload) -> Horizon:
    return Horizon(batch.reference_date, batch.horizon_days, batch.window_days)


async def process_batch(
    redis: Redis, engine: Engine, cache: SessionCache, batch: RupturaBatchPayload
) -> int:
    """Analyses and stores one batch; returns the results stored for the session so far, or
    sessions.SESSION_GONE / sessions.DUPLICATE_BATCH when there was nothing to do."""
    if not await sessions.batch_pending(redis, batch.session_id, batch.batch_index):
        return sessions.DUPLICATE_BATCH
    analysis = cache.get(
        batch.session_id,
        engine,
        horizon_of(batch),
        batch.mode,
        whole_carteira=batch.whole_carteira,
    )
    results = await asyncio.to_thread(analysis.analyse, batch.pedidos)
    encoded = [orjson.dumps(result) for result in results]
    return await sessions.record_batch(redis, batch.session_id, batch.batch_index, encoded)
