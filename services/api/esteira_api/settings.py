"""The gateway's settings: ruptura's and scraping's (it runs both, inline), plus where it listens,
how it authenticates and limits, and how it decides between the queue and doing work itself."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, PrivateAttr, model_validator

from esteira_api import apikeys
from esteira_ruptura.settings import RupturaSettings
from esteira_scraping.settings import ScrapingSettings


class ApiSettings(RupturaSettings, ScrapingSettings):
    api_host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port the gateway listens on.")
    api_workers: int = Field(1, ge=1, description="uvicorn worker processes of the gateway.")
    api_header_timeout_seconds: float = Field(
        5.0, gt=0, description="A request head not complete this long after it began: 408, closed."
    )
    api_keep_alive_seconds: int = Field(
        5, ge=1, description="An idle keep-alive connection is closed after this long."
    )
    api_max_head_bytes: int = Field(
        65536, ge=4096, description="Largest request head (request line and headers; more: 431)."
    )
    api_max_line_bytes: int = Field(
        8192, ge=1024, description="Longest request line (414) or header line (431)."
    )
    api_max_connections: int = Field(
        8192,
        ge=16,
        description="Connections one gateway process holds; beyond, the oldest idle one is "
        "closed, or with none idle the newcomer gets 503.",
    )
    api_max_connections_per_address: int = Field(
        256, ge=0, description="Connections one client address may hold (more: 429); 0: no cap."
    )
    auth_refusals_per_second: float = Field(
        1.0,
        gt=0,
        description="401s one client address may get a second, per gateway process (beyond: 429).",
    )
    auth_refusal_burst: int = Field(
        20, ge=1, description="401s one client address may get at once above that rate."
    )
    database_lock_timeout_seconds: float = Field(
        2.0,
        gt=0,
        description="A gateway's PostgreSQL statement waiting longer than this for a lock "
        "someone else holds (a migration, a DBA's transaction) fails: a request gets 503 "
        "database_unavailable, and the gateway's threads are not held for as long as the lock; "
        "a job its standby worker runs fails, and is tried again.",
    )
    readiness_timeout_seconds: float = Field(
        2.0, gt=0, description="How long /readyz waits for each dependency."
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, description="Largest request body accepted (more: 413)."
    )
    queue_check_seconds: float = Field(
        1.0, gt=0, description="How long a queue health check is reused before a new one."
    )
    redis_breaker_reset_seconds: float = Field(
        2.0, gt=0, description="After a Redis failure, calls fail at once for this long."
    )
    ruptura_grace_seconds: float = Field(
        30, ge=0, description="Oldest ready ruptura job's age, with no worker, before inline."
    )
    scraper_grace_seconds: float = Field(
        180, ge=0, description="The same for scraping; covers a scraper pool scaling from 0."
    )
    event_stream_max_seconds: float = Field(
        300,
        gt=0,
        description="Longest a session's event stream stays open; then the browser reconnects.",
    )
    inline_scrape_limit: int = Field(
        1, ge=1, description="Scrapes one gateway process runs itself at once (its browsers)."
    )
    inline_ruptura_jobs: int = Field(
        4, ge=1, description="Ruptura batches one gateway process runs itself at once."
    )

    api_keys: str = Field(
        "",
        repr=False,
        description="API keys as tenant:sha256 entries, comma-separated (`esteira api-key TENANT` "
        "makes a key and its entry); a tenant may have several.",
    )
    auth_disabled: bool = Field(
        False,
        description="Serve without API keys, every caller as tenant `anonymous` (local demo only).",
    )
    tenant_rate_per_second: float = Field(
        50,
        ge=0,
        description="Requests per second one tenant may make, all gateways together (0: no limit).",
    )
    tenant_rate_burst: int = Field(
        100, ge=1, description="Requests a tenant may make at once above its rate."
    )
    cors_origins: str = Field(
        "",
        description="Origins whose pages may call the gateway from a browser, comma-separated "
        "(e.g. `https://erp.example,https://erp.example:8443`; `*` for any); none by default.",
    )
    _tenants_by_digest: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _keys_or_explicitly_open(self) -> ApiSettings:
        self._tenants_by_digest = apikeys.parse_entries(self.api_keys)
        if not self._tenants_by_digest and not self.auth_disabled:
            raise ValueError(
                "no API keys: set ESTEIRA_API_KEYS (see `esteira api-key`), or "
                "ESTEIRA_AUTH_DISABLED=true to serve without authentication"
            )
        return self

    def tenant_for(self, key: str) -> str | None:
        """The tenant an API key belongs to, or None."""
        return self._tenants_by_digest.get(apikeys.key_digest(key))


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
