"""Settings shared by every Esteira process, read from ESTEIRA_* environment variables.

Each service extends `CoreSettings` with its own fields; secrets are `SecretStr`, so they never
appear in a repr, a log line or an error body.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESTEIRA_", extra="ignore")

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis DSN: redis:// or rediss:// (TLS); the password may be given apart.",
    )
    redis_password: SecretStr | None = Field(
        None, description="Redis password; overrides one in ESTEIRA_REDIS_URL."
    )
    redis_tls_ca_file: Path | None = Field(
        None, description="CA bundle that signs the Redis server certificate (rediss:// only)."
    )
    redis_timeout_seconds: float = Field(
        1.0, gt=0, description="Connect and command timeout for Redis calls."
    )
    redis_sentinels: str = Field(
        "",
        description="Sentinels watching a replicated Redis, host:port comma-separated (empty: "
        "none, ESTEIRA_REDIS_URL names the Redis). When set, every client asks them for the "
        "primary and follows a failover; the URL then gives only TLS (rediss://) and the "
        "database number.",
    )
    redis_master_name: str = Field(
        "mymaster", min_length=1, description="The name the Sentinels monitor the primary under."
    )
    redis_sentinel_password: SecretStr | None = Field(
        None, description="Password of the Sentinels themselves (their requirepass), if any."
    )
    redis_max_connections: int = Field(
        256,
        ge=8,
        description="Redis connections one process may open (each event stream holds one).",
    )
    database_url: str = Field(
        "sqlite:///var/esteira.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db.",
    )
    database_password: SecretStr | None = Field(
        None, description="Database password; overrides one in ESTEIRA_DATABASE_URL."
    )
    heartbeat_interval_seconds: float = Field(
        2.0,
        gt=0,
        description="How often a worker records that it is alive; it counts as online for 3x "
        "that, and the jobs of one silent for longer run again elsewhere.",
    )
    log_level: str = Field("INFO", description="Python log level name.")
    log_format: str = Field("json", description="json (JSON lines) or text.")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("ESTEIRA_REDIS_URL must start with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels(cls, value: str) -> str:
        sentinel_addresses(value)  # raises on a malformed entry
        return value

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """ESTEIRA_REDIS_SENTINELS as (host, port) pairs; empty when there are none."""
        return sentinel_addresses(self.redis_sentinels)

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value not in {"json", "text"}:
            raise ValueError("ESTEIRA_LOG_FORMAT must be json or text")
        return value


def sentinel_addresses(value: str) -> list[tuple[str, int]]:
    """`host:port,host:port` as pairs (an IPv6 host in brackets: `[::1]:26379`)."""
    addresses = []
    for entry in (item.strip() for item in value.split(",")):
        if not entry:
            continue
        host, _, port = entry.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"ESTEIRA_REDIS_SENTINELS: {entry!r} is not host:port (e.g. sentinel-0:26379)"
            )
        addresses.append((host, int(port)))
    return addresses


class WorkerPoolSettings(CoreSettings):
    """What every worker process needs on top of the core: its metrics port and its rhythm."""

    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the worker's /metrics (0: the pool's default)."
    )
    metrics_host: str = Field("0.0.0.0", description="Address the worker's /metrics binds to.")
    worker_concurrency: int = Field(
        0, ge=0, description="Jobs run at once by one worker process (0: the pool's default)."
    )
    job_timeout_seconds: float = Field(
        0,
        ge=0,
        description="arq job timeout (0: the pool's default): a job still running this long "
        "is cancelled; a ruptura job ends itself 2 s before (half way for 4 s or less), to be "
        "tried again.",
    )
    job_completion_wait_seconds: float = Field(
        0,
        ge=0,
        description="On SIGTERM, how long running jobs may finish (0: the pool's default); must "
        "exceed the job timeout and stay under the pod's terminationGracePeriodSeconds.",
    )


@lru_cache
def get_core_settings() -> CoreSettings:
    return CoreSettings()
