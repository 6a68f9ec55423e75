"""The one way Esteira connects to Redis: an arq-capable client from settings.

Connecting never happens here: the client connects on its first command, so a process starts
even while Redis is down (the gateway then serves inline, see ARCHITECTURE "Health and fallback").
"""

from __future__ import annotations

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import RedisError

from esteira_core.breaker import CircuitOpen
from esteira_core.serialization import deserialize_job, serialize_job
from esteira_core.settings import CoreSettings

# What a failing Redis raises: refused, reset, timed out, or the breaker saying not to try.
REDIS_ERRORS = (RedisError, OSError, TimeoutError, CircuitOpen)


def arq_redis_settings(settings: CoreSettings) -> RedisSettings:
    """arq's own connection settings (used by the workers), from ours."""
    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    if settings.redis_password is not None:
        redis_settings.password = settings.redis_password.get_secret_value()
    if settings.redis_tls_ca_file is not None:
        redis_settings.ssl_ca_certs = str(settings.redis_tls_ca_file)
    redis_settings.conn_timeout = max(1, round(settings.redis_timeout_seconds))
    return redis_settings


# How long a command waits for a free connection of the pool. Longer than a Redis timeout on
# purpose: a burst of requests queues for a connection instead of failing, so an overloaded
# process is not mistaken for a dead Redis (which would send its work inline and overload it
# further). A dead Redis shows up as a failed connect or command, within the Redis timeout.
POOL_WAIT_SECONDS = 10.0


def create_redis(settings: CoreSettings) -> ArqRedis:
    """A pooled client that also enqueues arq jobs with Esteira's JSON serializer."""
    extra: dict[str, object] = {}
    if settings.redis_password is not None:
        extra["password"] = settings.redis_password.get_secret_value()
    if settings.redis_url.startswith("rediss://"):
        # A string: redis-py's asyncio TLS context ignores an ssl.VerifyMode and then fails.
        extra["ssl_cert_reqs"] = "required"
        if settings.redis_tls_ca_file is not None:
            extra["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
    # A blocking pool makes a burst of requests wait for a connection instead of failing.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=max(POOL_WAIT_SECONDS, settings.redis_timeout_seconds),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        health_check_interval=30,
        **extra,
    )
    return ArqRedis(
        pool,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )
