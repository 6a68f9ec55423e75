"""The one way Esteira connects to Redis: an arq-capable client from settings.

Connecting never happens here: the client connects on its first command, so a process starts
even while Redis is down (the gateway then serves inline, see ARCHITECTURE "Health and fallback").

With Sentinels configured (ESTEIRA_REDIS_SENTINELS), every connection is made to the primary the
Sentinels name at the time: after a failover, a connection to the old primary fails (or is told
it is now read-only), is dropped, and the next one asks the Sentinels again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import cache
from typing import Any, TypeVar, cast

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError, NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from esteira_core.breaker import CircuitOpen
from esteira_core.serialization import deserialize_job, serialize_job
from esteira_core.settings import CoreSettings

T = TypeVar("T")

# What a failing Redis raises: refused, reset, timed out, or the breaker saying not to try.
REDIS_ERRORS = (RedisError, OSError, TimeoutError, CircuitOpen)
# Of those, the ones that say only that no answer was read in time.
TIMEOUTS = (RedisTimeoutError, TimeoutError)

# A worker's commands ride out a Redis restart or a Sentinel failover (a few seconds) instead of
# failing the job that made them: each failed command is tried again, 0.05 s later, then twice
# as long each time up to 1 s, for about 20 s in all. Every Esteira write is idempotent, so a
# command tried again after its answer was lost does no harm. The gateway does not wait: its
# requests fail at once and its circuit breaker answers 503 (or inline) meanwhile.
RIDE_OUT_RETRIES = 24


class RideOut(Retry):
    """The retries of a worker's client. Shared by every connection of its pool (a connection
    copies its retry: this one is not copied), so `give_up()` reaches them all: a worker told to
    stop while Redis is away tries each command once, and stops, instead of waiting it out."""

    __slots__ = ("gave_up",)

    def __init__(self) -> None:
        super().__init__(ExponentialBackoff(cap=1.0, base=0.05), RIDE_OUT_RETRIES)
        self.gave_up = False

    def __deepcopy__(self, _memo: dict[int, object]) -> RideOut:
        return self

    def give_up(self) -> None:
        self.gave_up = True

    async def call_with_retry(
        self, do: Callable[[], Awaitable[T]], fail: Callable[[RedisError], Any]
    ) -> T:
        if not self.gave_up:
            return await super().call_with_retry(do, fail)
        try:
            return await do()
        except self._supported_errors as error:
            await fail(error)
            raise


def give_up_riding_out(redis: ArqRedis) -> None:
    """A worker stops: its client's commands are tried once more, not for another 20 s."""
    retry = redis.connection_pool.connection_kwargs.get("retry")
    if isinstance(retry, RideOut):
        retry.give_up()


# How long a command waits for a free connection of the pool. Longer than a Redis timeout on
# purpose: a burst of requests queues for a connection instead of failing, so an overloaded
# process is not mistaken for a dead Redis (which would send its work inline and overload it
# further). A dead Redis shows up as a failed connect or command, within the Redis timeout.
POOL_WAIT_SECONDS = 10.0


class TimedWrite(AbstractConnection):
    """A connection that keeps its write deadline (the socket timeout) with asyncio.timeout.
    redis-py keeps it with asyncio.wait_for, which on Python 3.11 runs every write as a task of
    its own: a task, a timer, a callback and two more turns of the event loop per command.
    The deadline and the errors are the same: past it the connection is dropped and a Redis
    TimeoutError raised."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        timeout = self.socket_timeout
        if not timeout or not self.is_connected:
            await super().send_packed_command(command, check_health)
            return
        # Without a socket timeout redis-py writes at once; the deadline is kept around it. The
        # connection is this caller's alone until it goes back to the pool.
        self.socket_timeout = None
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health)
        except TimeoutError as error:
            raise RedisTimeoutError("Timeout writing to socket") from error
        finally:
            self.socket_timeout = timeout


class LeanRoundTrips(ConnectionPool):
    """A pool whose round trips cost less CPU (the gateway makes one or more on every request):
    its connections write under asyncio.timeout (TimedWrite), and a connection it hands out is
    told ready to send by what it has received so far: nothing unread, no end of stream, no
    error. redis-py finds that out by reading it under a zero timeout, which on every command
    costs a read that is cancelled, a turn of the event loop and two exceptions. What the
    socket has received is in the connection's stream already, as the loop reads it when it
    arrives; anything else there (an unread answer, a close, an error) sends the connection
    through redis-py's own check, which reconnects it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The pool's own kind of connection (plain, TLS, Sentinel-managed), with TimedWrite.
        self.connection_class = cast(
            type[AbstractConnection],
            type(self.connection_class.__name__, (TimedWrite, self.connection_class), {}),
        )

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        stream = connection._reader
        if (
            stream is not None
            and connection.is_connected
            and connection._socket_is_empty()  # type: ignore[no-untyped-call]
            and not stream.at_eof()
            and stream.exception() is None
        ):
            return
        await super().ensure_connection(connection)


class BlockingPool(LeanRoundTrips, BlockingConnectionPool):
    """A burst waits for a free connection rather than failing (the blocking pool)."""


class BlockingSentinelConnectionPool(
    LeanRoundTrips, SentinelConnectionPool, BlockingConnectionPool
):
    """Connections to the primary the Sentinels name, and a burst that waits for a free one
    (the blocking pool's behaviour) rather than failing."""


def create_redis(settings: CoreSettings, *, ride_out: bool = False) -> ArqRedis:
    """A pooled client that also enqueues arq jobs with Esteira's JSON serializer. `ride_out`
    (a worker's client): a command that finds Redis gone is tried again for about 20 s."""
    extra: dict[str, object] = {}
    if ride_out:
        extra.update(retry=RideOut(), retry_on_error=[ConnectionError, RedisTimeoutError])
    tls: dict[str, object] = {}
    if settings.redis_password is not None:
        extra["password"] = settings.redis_password.get_secret_value()
    if settings.redis_url.startswith("rediss://"):
        # A string: redis-py's asyncio TLS context ignores an ssl.VerifyMode and then fails.
        tls["ssl_cert_reqs"] = "required"
        if settings.redis_tls_ca_file is not None:
            tls["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
    timeouts = {
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
    }
    # A blocking pool makes a burst of requests wait for a connection instead of failing.
    waiting = {
        "max_connections": settings.redis_max_connections,
        "timeout": max(POOL_WAIT_SECONDS, settings.redis_timeout_seconds),
    }
    pool: BlockingConnectionPool
    if settings.sentinel_addresses:
        if not ride_out:
            # A pooled connection to a primary that just died fails at once; one more try
            # reconnects, which asks the Sentinels where the primary is now.
            extra.update(retry=Retry(NoBackoff(), 1), retry_on_error=[ConnectionError])
        pool = _sentinel_pool(settings, {**waiting, **timeouts, **extra}, tls)
    else:
        pool = BlockingPool.from_url(
            settings.redis_url, **waiting, **timeouts, health_check_interval=30, **extra, **tls
        )
    return ArqRedis(
        pool,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )


def _sentinel_pool(
    settings: CoreSettings, options: dict[str, object], tls: dict[str, object]
) -> BlockingSentinelConnectionPool:
    """A pool of connections to the current primary. The Sentinels are reached with the same
    timeouts and TLS as Redis, and their own password."""
    sentinel_options: dict[str, object] = {
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
    }
    if settings.redis_sentinel_password is not None:
        sentinel_options["password"] = settings.redis_sentinel_password.get_secret_value()
    if tls:
        sentinel_options.update(ssl=True, **tls)
    addresses = settings.sentinel_addresses
    sentinel = Sentinel(addresses, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    return BlockingSentinelConnectionPool(
        settings.redis_master_name,
        sentinel,
        db=RedisSettings.from_dsn(settings.redis_url).database,
        ssl=bool(tls),
        **options,
        **tls,
    )


@cache
def _digest(script: str) -> str:
    """A script's SHA-1, computed once: the scripts are a few module constants."""
    return hashlib.sha1(script.encode()).hexdigest()


async def run_script(
    redis: Redis, script: str, keys: Sequence[str], args: Sequence[str | bytes]
) -> Any:
    """Runs a Lua script by its digest (EVALSHA), teaching it to Redis first when Redis does not
    know it (a new or restarted Redis). For scripts run on every request: their text is not
    sent, read and hashed by Redis each time."""
    digest = _digest(script)
    try:
        return await redis.evalsha(digest, len(keys), *keys, *args)  # type: ignore[misc,arg-type]
    except NoScriptError:
        await redis.script_load(script)
        return await redis.evalsha(digest, len(keys), *keys, *args)  # type: ignore[misc,arg-type]
