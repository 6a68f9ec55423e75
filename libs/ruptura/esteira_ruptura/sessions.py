"""A ruptura session in Redis (ARCHITECTURE "Contracts"): its hash, its results list (a client's
offset indexes it; progress is its length), the set of batches written and an events channel.

Writing a batch is one Lua script, so it is atomic and idempotent: a retried or duplicated batch
finds its index already in the set and writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from redis.asyncio import Redis

from esteira_core import fair, jobs, keys
from esteira_core.errors import NotFound
from esteira_core.jobs import RupturaMode
from esteira_core.redis import run_script

# KEYS: the session's hash, results, batches written, events. `record` appends one batch's
# documents (after its index was added to the batches written), the keys then living `ttl`.
_RECORD_LUA = """
local function record(index, documents, ttl, now)
  redis.call('RPUSH', KEYS[2], unpack(documents))
  local processed = redis.call('LLEN', KEYS[2])
  local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
  local done = processed >= total
  if done then
    redis.call('HSET', KEYS[1], 'status', 'done', 'finished_at', now)
  else
    redis.call('HSET', KEYS[1], 'status', 'running')
  end
  redis.call('PUBLISH', KEYS[4], cjson.encode({
    batch = tonumber(index), processed = processed, total = total, done = done}))
  return processed
end
"""
# ARGV: the batch's index, ttl, now, then its results.
_RECORD_BATCH = (
    _RECORD_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return -2 end
return record(ARGV[1], {unpack(ARGV, 4)}, ARGV[2], ARGV[3])
"""
)
# KEYS 5, 6: a judged carteira's reports and state. ARGV: ttl (the judged keys' new one too),
# now, then per batch its index, its number of orders, then each order's number and what to
# record for it when the carteira has no such order. Each batch is written and announced on its
# own, in order, up to the first that cannot be yet; returns a code per batch tried.
_COPY_BATCHES = (
    _RECORD_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local complete = redis.call('HGET', KEYS[6], 'complete')
local judged = complete or redis.call('EXISTS', KEYS[6]) == 1
local codes = {}
local at = 3
while at <= #ARGV do
  local index, count = ARGV[at], tonumber(ARGV[at + 1])
  local first = at + 2
  at = first + 2 * count
  if redis.call('SISMEMBER', KEYS[3], index) == 1 then
    codes[#codes + 1] = -2
  else
    if not judged then
      codes[#codes + 1] = -3
      return codes
    end
    local numbers = {}
    for i = first, at - 1, 2 do numbers[#numbers + 1] = ARGV[i] end
    local documents = redis.call('HMGET', KEYS[5], unpack(numbers))
    for i, document in ipairs(documents) do
      if not document then
        if not complete then
          codes[#codes + 1] = -4
          return codes
        end
        documents[i] = ARGV[first - 1 + 2 * i]
      end
    end
    redis.call('SADD', KEYS[3], index)
    codes[#codes + 1] = record(index, documents, ARGV[1], ARGV[2])
  end
end
if complete then  -- while it is judged, its lease alone keeps it: a dead judge's expires
  redis.call('EXPIRE', KEYS[5], ARGV[1])
  redis.call('EXPIRE', KEYS[6], ARGV[1])
end
return codes
"""
)
SESSION_GONE = -1
DUPLICATE_BATCH = -2
JUDGED_GONE = -3  # the judged carteira is gone (its judge died): judge it again
NOT_JUDGED_YET = -4  # some of the batch's orders are not judged yet: try again shortly


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    owner: str
    total: int
    batches: int
    mode: RupturaMode
    status: str
    path: str
    reference_date: date
    horizon_days: int
    window_days: int
    created_at: float
    finished_at: float | None
    processed: int

    @property
    def done(self) -> bool:
        return self.processed >= self.total

    @property
    def percent(self) -> float:
        return round(100.0 * self.processed / self.total, 1) if self.total else 100.0


def record(
    *,
    session_id: str,
    owner: str,
    total: int,
    batches: int,
    batches_per_job: int,
    mode: RupturaMode,
    path: str,
    reference_date: date,
    horizon_days: int,
    window_days: int,
    ttl: int = keys.RUPTURA_SESSION_TTL_SECONDS,
) -> fair.Record:
    """A new session's record, which fair.submit writes with the session's jobs: its hash, and
    its place among the open sessions (what the recovery of lost batches scans)."""
    now = time.time()
    return fair.Record(
        key=keys.ruptura_session(session_id),
        fields={
            "owner": owner,
            "total": total,
            "batches": batches,
            "batches_per_job": batches_per_job,
            "mode": mode.value,
            "status": "queued",
            "path": path,
            "reference_date": reference_date.isoformat(),
            "horizon_days": horizon_days,
            "window_days": window_days,
            "created_at": now,
        },
        ttl=ttl,
        index=keys.ruptura_sessions_open(),
        member=session_id,
        score=now,
    )


def _session_keys(session_id: str) -> list[str]:
    """The keys `record` writes, in its order: hash, results, batches written, events."""
    return [
        keys.ruptura_session(session_id),
        keys.ruptura_session_results(session_id),
        keys.ruptura_session_batches_done(session_id),
        keys.ruptura_session_events(session_id),
    ]


async def record_batch(
    redis: Redis,
    session_id: str,
    batch_index: int,
    results: Sequence[bytes],
    ttl: int = keys.RUPTURA_SESSION_TTL_SECONDS,
) -> int:
    """Appends one batch's results; returns the results now stored, or SESSION_GONE /
    DUPLICATE_BATCH when nothing was written."""
    written: int = await run_script(
        redis,
        _RECORD_BATCH,
        _session_keys(session_id),
        [str(batch_index), str(ttl), str(time.time()), *results],
    )
    return written


async def copy_batches(
    redis: Redis,
    session_id: str,
    judged_id: str,
    batches: Sequence[tuple[int, Sequence[tuple[str, bytes]]]],
    ttl: int = keys.RUPTURA_SESSION_TTL_SECONDS,
) -> list[int]:
    """Appends batches' reports from a judged carteira, each batch on its own and in order, in
    one call (`batches`: each one's index and orders, an order being its number and what to
    record when the carteira has no such order). Returns, for each batch up to the first that
    could not be written, the results then stored, or DUPLICATE_BATCH; the last may be
    JUDGED_GONE or NOT_JUDGED_YET, which stops the copy there; [SESSION_GONE] alone when the
    session is gone. A finished judged carteira then lives `ttl` longer: as long as the
    sessions using it."""
    arguments: list[str | bytes] = [str(ttl), str(time.time())]
    for index, orders in batches:
        arguments += [str(index), str(len(orders)), *(part for order in orders for part in order)]
    codes: list[int] = await run_script(
        redis,
        _COPY_BATCHES,
        [
            *_session_keys(session_id),
            keys.ruptura_judged_reports(judged_id),
            keys.ruptura_judged_state(judged_id),
        ],
        arguments,
    )
    return codes


def _info(session_id: str, fields: dict[bytes, bytes], processed: int) -> SessionInfo:
    text = {k.decode(): v.decode() for k, v in fields.items()}
    return SessionInfo(
        session_id=session_id,
        owner=text["owner"],
        total=int(text["total"]),
        batches=int(text["batches"]),
        mode=RupturaMode(text["mode"]),
        status=text["status"],
        path=text["path"],
        reference_date=date.fromisoformat(text["reference_date"]),
        horizon_days=int(text["horizon_days"]),
        window_days=int(text["window_days"]),
        created_at=float(text["created_at"]),
        finished_at=float(text["finished_at"]) if "finished_at" in text else None,
        processed=processed,
    )


async def info(redis: Redis, session_id: str) -> SessionInfo | None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.ruptura_session(session_id))
        pipe.llen(keys.ruptura_session_results(session_id))
        fields, processed = await pipe.execute()
    return _info(session_id, fields, processed) if fields else None


def _owned(info: SessionInfo | None, session_id: str, tenant: str) -> SessionInfo:
    """Another tenant's session is, to this one, a session that does not exist."""
    if info is None or info.owner != tenant:
        raise NotFound("session_not_found", f"Session {session_id} does not exist or expired.")
    return info


async def owned(redis: Redis, session_id: str, tenant: str) -> SessionInfo:
    """The tenant's session; NotFound for any other (expired, or another tenant's)."""
    return _owned(await info(redis, session_id), session_id, tenant)


@dataclass(frozen=True)
class ResultsPage:
    info: SessionInfo
    results: list[bytes]  # stored JSON documents, passed through undecoded
    next_offset: int

    @property
    def done(self) -> bool:
        """Finished, and every result read: a client may stop polling."""
        return self.info.done and self.next_offset >= self.info.total


async def results_since(
    redis: Redis, session_id: str, tenant: str, offset: int, limit: int
) -> ResultsPage:
    """The tenant's session and at most `limit` results stored from index `offset` on, as the
    JSON bytes stored. They are passed through undecoded: a 20,000-order session is tens of
    megabytes, and decoding it only to encode it again would cost the gateway most of its CPU."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.ruptura_session(session_id))
        pipe.lrange(keys.ruptura_session_results(session_id), offset, offset + limit - 1)
        pipe.llen(keys.ruptura_session_results(session_id))
        fields, raw, processed = await pipe.execute()
    found = _info(session_id, fields, processed) if fields else None
    return ResultsPage(_owned(found, session_id, tenant), raw, offset + len(raw))


async def delete(redis: Redis, session_id: str, tenant: str) -> None:
    """Drops the tenant's session (NotFound for any other)."""
    await owned(redis, session_id, tenant)
    removed: int = await redis.delete(
        keys.ruptura_session(session_id),
        keys.ruptura_session_results(session_id),
        keys.ruptura_session_batches_done(session_id),
    )
    if not removed:
        raise NotFound("session_not_found", f"Session {session_id} does not exist or expired.")


# KEYS: the session's hash, its batches written, and (optional) the pointer to a judged carteira
# of the version the job read. ARGV: the job's batch indexes. The session's judged carteira: the
# one it reads already, else the pointer's, which it reads from now on (pinned).
_PREPARE_JOB = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local judged = redis.call('HGET', KEYS[1], 'judged')
if not judged and KEYS[3] then
  judged = redis.call('GET', KEYS[3])
  if judged then redis.call('HSET', KEYS[1], 'judged', judged) end
end
return {judged or '', redis.call('SMISMEMBER', KEYS[2], unpack(ARGV))}
"""


async def prepare_job(
    redis: Redis, session_id: str, batch_indexes: Sequence[int], judged_pointer: str | None = None
) -> tuple[list[int], str | None] | None:
    """Of `batch_indexes`, those not written yet, and the judged carteira the session reads
    (None when it reads none): the one it reads already, else the one `judged_pointer` names,
    if any, which it reads from then on. None when the session is gone. One round trip."""
    session_keys = [keys.ruptura_session(session_id), keys.ruptura_session_batches_done(session_id)]
    found = await run_script(
        redis,
        _PREPARE_JOB,
        session_keys if judged_pointer is None else [*session_keys, judged_pointer],
        [str(index) for index in batch_indexes],
    )
    if found is None:
        return None
    judged, written = found
    pending = [index for index, done in zip(batch_indexes, written, strict=True) if not done]
    return pending, judged.decode() or None


# The session's judged carteira, if it is still `ARGV[1]`, is forgotten (it died with its judge).
_UNPIN = """
if redis.call('HGET', KEYS[1], 'judged') == ARGV[1] then redis.call('HDEL', KEYS[1], 'judged') end
"""


async def pin_judged(redis: Redis, session_id: str, judged_id: str) -> str:
    """Makes `judged_id` the carteira every batch of the session reads, unless it reads one
    already; returns the one it reads."""
    key = keys.ruptura_session(session_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hsetnx(key, "judged", judged_id)
        pipe.hget(key, "judged")
        _, pinned = await pipe.execute()
    return judged_id if pinned is None else str(pinned.decode())


async def unpin_judged(redis: Redis, session_id: str, judged_id: str) -> None:
    await redis.eval(_UNPIN, 1, keys.ruptura_session(session_id), judged_id)  # type: ignore[misc]


# KEYS: the open sessions. ARGV: the first of them to look at, how many, a session's hash key
# less its id, its results' and batches' suffixes, the batches of a job in a session that does
# not say (recorded before its hash held them), a job id less its
# session and batch (`<prefix><session>-<first batch>`), arq's job and result key prefixes.
# A session finished or gone leaves the open sessions. Returns the ids of the jobs arq finished
# (its result is there, no record of the job waits) although some of their batches are not
# written, and where to look next (-1: every open session was seen).
_LOST_JOBS = """
local first, most = tonumber(ARGV[1]), tonumber(ARGV[2])
local ids = redis.call('ZRANGE', KEYS[1], first, first + most - 1)
local lost, gone = {}, 0
for _, id in ipairs(ids) do
  local session = ARGV[3] .. id
  local total, batches, per_job = unpack(
    redis.call('HMGET', session, 'total', 'batches', 'batches_per_job'))
  per_job = tonumber(per_job or ARGV[6])
  if not total or redis.call('LLEN', session .. ARGV[4]) >= tonumber(total) then
    redis.call('ZREM', KEYS[1], id)
    gone = gone + 1
  else
    for start = 0, tonumber(batches) - 1, per_job do
      local job = ARGV[7] .. id .. '-' .. start
      local finished = redis.call('EXISTS', ARGV[9] .. job) == 1
      if finished and redis.call('EXISTS', ARGV[8] .. job) == 0 then
        for index = start, math.min(start + per_job, tonumber(batches)) - 1 do
          if redis.call('SISMEMBER', session .. ARGV[5], index) == 0 then
            lost[#lost + 1] = job
            break
          end
        end
      end
    end
  end
end
if #ids < most then return {lost, -1} end
return {lost, first + most - gone}
"""
# Open sessions looked at per call (bounds the time one call holds Redis: ~6 ms for a session
# of 100,000 orders whose jobs all finished, a few microseconds for a small one).
LOST_JOBS_PER_CALL = 10


async def lost_jobs(
    redis: Redis, job_id_prefix: str, job_key_prefix: str, result_key_prefix: str
) -> list[str]:
    """The jobs (`<job_id_prefix><session>-<first batch>`, as many batches each as the session
    says, RUPTURA_BATCHES_PER_JOB in one recorded before it said) of the open sessions that arq
    finished while some of their batches are not written: a batch's write acknowledged by a
    Redis primary that died before its replica had it, the job's end then written to the
    promoted replica. Nothing else finishes a job before its batches are
    written (or written in error). Finished and expired sessions are forgotten on the way."""
    session = keys.ruptura_session("")
    suffixes = [
        keys.ruptura_session_results("").removeprefix(session),
        keys.ruptura_session_batches_done("").removeprefix(session),
    ]
    found: list[str] = []
    first = 0
    while True:
        lost, first = await run_script(
            redis,
            _LOST_JOBS,
            [keys.ruptura_sessions_open()],
            [
                str(first),
                str(LOST_JOBS_PER_CALL),
                session,
                *suffixes,
                str(jobs.RUPTURA_BATCHES_PER_JOB),
                job_id_prefix,
                job_key_prefix,
                result_key_prefix,
            ],
        )
        found += [job_id.decode() for job_id in lost]
        if first < 0:
            return found
