"""Scrape tasks in Redis: one hash per task, and per OS a pointer to its active task, so that
concurrent lookups of one OS share one scrape (request coalescing).

Statuses: queued -> in_progress -> success | failed, with deferred (rate limit) and retrying
(after a transient failure) in between. The pointer is created with the task, atomically, and
removed when the task ends.

A task belongs to every tenant that started or joined it (an `owner:<tenant>` field each): it
holds only the portal's data, so a coalesced scrape may serve several tenants.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from esteira_core import heartbeats, keys
from esteira_core.errors import NotFound
from esteira_core.heartbeats import ALIVE_LUA
from esteira_core.jobs import Pool
from esteira_core.redis import run_script

ACTIVE = ("queued", "in_progress", "deferred", "retrying")

ENDED = frozenset({"success", "failed"})  # statuses a task never leaves

# What each stage of a task tells the people waiting for it, in their language (the seed's).
STAGE_MESSAGES = {
    "queued": "Aguardando na fila...",
    "rate_limited": "Aguardando o limite de acessos ao portal...",
    "starting": "Preparando o navegador...",
    "opening": "Abrindo o portal...",
    "login": "Entrando no portal...",
    "searching": "Executando scraping externo...",
    "extracting": "Lendo os dados da OS...",
    "saving": "Gravando os dados...",
    "waiting_retry": "Falha temporária, nova tentativa em instantes...",
    "done": "Scraping concluído com sucesso",
    "failed": "Scraping falhou",
}

_START_OR_JOIN = """
local function remember(task_id)
  redis.call('LREM', KEYS[2], 0, task_id)
  redis.call('LPUSH', KEYS[2], task_id)
  redis.call('LTRIM', KEYS[2], 0, 99)
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
local owner = 'owner:' .. ARGV[5]
local current = redis.call('GET', KEYS[1])
if current then
  local task_key = ARGV[3] .. current
  if redis.call('EXISTS', task_key) == 1 then
    redis.call('HSET', task_key, 'shared', '1', owner, '1')
    remember(current)
    return {current, 0}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local task_key = ARGV[3] .. ARGV[1]
redis.call('HSET', task_key, 'task_id', ARGV[1], 'numero_os', ARGV[4], owner, '1',
  'status', 'queued', 'stage', 'queued', 'progress', '0', 'attempts', '0',
  'created_at', ARGV[6], 'updated_at', ARGV[6])
redis.call('EXPIRE', task_key, ARGV[7])
remember(ARGV[1])
return {ARGV[1], 1}
"""

# A task's hash is written only while it exists: a scrape that outlived its task (expired, or
# lost with a Redis restart) must not bring back an ownerless hash that never expires.
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
redis.call('PUBLISH', KEYS[2], ARGV[#ARGV])
return 1
"""

_FINISH = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if redis.call('GET', KEYS[4]) then redis.call('DEL', KEYS[4]) end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PUBLISH', KEYS[3], 'finished')
return 1
"""

# Whoever scrapes a task holds its lease, so a task delivered twice is scraped once. A lease
# whose holder is no longer alive (heartbeats) is taken over at once.
_CLAIM = (
    ALIVE_LUA
    + """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and alive(KEYS[2], KEYS[3], holder, tonumber(ARGV[3])) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
)


@dataclass(frozen=True)
class Joined:
    task_id: str
    created: bool


async def start_or_join(
    redis: Redis,
    numero_os: str,
    owner: str,
    *,
    active_ttl: int,
    task_ttl: int = keys.SCRAPE_TASK_TTL_SECONDS,
) -> Joined:
    """The active task of this OS, or a new one (created=True: the caller must enqueue it)."""
    task_id = uuid.uuid4().hex
    prefix = keys.scrape_task("")
    found, created = await run_script(
        redis,
        _START_OR_JOIN,
        [keys.scrape_active_os(numero_os), keys.scrape_recent(owner)],
        [task_id, str(active_ttl), prefix, numero_os, owner, str(time.time()), str(task_ttl)],
    )
    return Joined(found.decode() if isinstance(found, bytes) else str(found), bool(created))


def _fields(fields: dict[str, Any]) -> list[str]:
    """The fields as HSET arguments, `updated_at` (now) last."""
    values = {name: _text(value) for name, value in fields.items()}
    values["updated_at"] = str(time.time())
    return [item for pair in values.items() for item in pair]


async def update(redis: Redis, task_id: str, **fields: Any) -> bool:
    """Changes fields of the task and tells whoever waits for it (one round trip); False when
    the task no longer exists (nothing is written then)."""
    written = await run_script(
        redis,
        _UPDATE,
        [keys.scrape_task(task_id), keys.scrape_task_events(task_id)],
        _fields(fields),
    )
    return bool(written)


async def finish(redis: Redis, task_id: str, numero_os: str, **fields: Any) -> bool:
    """Records the end of a task, frees its OS for a new scrape and its lease; False when the
    task no longer exists (nothing is written then)."""
    written = await run_script(
        redis,
        _FINISH,
        [
            keys.scrape_task(task_id),
            keys.scrape_active_os(numero_os),
            keys.scrape_task_events(task_id),
            keys.scrape_task_lease(task_id),
        ],
        [task_id, *_fields(fields)],
    )
    return bool(written)


async def claim(redis: Redis, task_id: str, member: str, seconds: float, interval: float) -> bool:
    """Takes the task's lease for `member` for `seconds`: False while another live process
    (heartbeats every `interval`) scrapes it."""
    taken = await run_script(
        redis,
        _CLAIM,
        [
            keys.scrape_task_lease(task_id),
            keys.workers(Pool.SCRAPER.value),
            keys.standby_workers(Pool.SCRAPER.value),
        ],
        [member, str(math.ceil(seconds)), str(heartbeats.stale_before(time.time(), interval))],
    )
    return bool(taken)


async def get(redis: Redis, task_id: str) -> dict[str, Any] | None:
    return _parsed(await redis.hgetall(keys.scrape_task(task_id)))  # type: ignore[misc]


def seen_by(task: dict[str, Any] | None, task_id: str, tenant: str) -> dict[str, Any]:
    """A task the tenant started or joined, as the tenant may see it (not who else shares it);
    any other is, to this tenant, a task that does not exist (None: gone)."""
    if task is None or tenant not in task["owners"]:
        raise NotFound("task_not_found", f"Task {task_id} does not exist or expired.")
    return without_owners(task)


def without_owners(task: dict[str, Any]) -> dict[str, Any]:
    """What a tenant may see of a task: not who else shares it."""
    return {name: value for name, value in task.items() if name != "owners"}


def _parsed(raw: dict[bytes, bytes]) -> dict[str, Any] | None:
    if not raw:
        return None
    task: dict[str, Any] = {}
    owners: set[str] = set()
    for name, value in ((k.decode(), v.decode()) for k, v in raw.items()):
        if name.startswith("owner:"):
            owners.add(name.removeprefix("owner:"))
        else:
            task[name] = value
    task["owners"] = owners
    for name in ("progress", "attempts"):
        task[name] = int(task.get(name, 0))
    for name in ("result", "error"):
        if name in task:
            task[name] = json.loads(task[name])
    for name in ("created_at", "updated_at", "eta"):
        if name in task:
            task[name] = float(task[name])
    task["shared"] = task.get("shared") == "1"
    return task


async def recent(redis: Redis, tenant: str, limit: int) -> list[dict[str, Any]]:
    """The latest tasks of a tenant, newest first (expired ones left out)."""
    ids = await redis.lrange(keys.scrape_recent(tenant), 0, limit - 1)  # type: ignore[misc]
    async with redis.pipeline(transaction=False) as pipe:  # one round trip for every task
        for task_id in ids:
            pipe.hgetall(keys.scrape_task(task_id.decode()))
        found = [_parsed(raw) for raw in await pipe.execute()]
    return [task for task in found if task is not None]


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


async def release(redis: Redis, task_id: str, member: str) -> None:
    """Gives the task's lease up, if `member` holds it."""
    await run_script(redis, _RELEASE, [keys.scrape_task_lease(task_id)], [member])


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
