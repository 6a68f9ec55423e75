"""The gateway's settings: the core ones plus where it listens and how long it waits."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, field_validator, model_validator

from esteira_api import apikeys
from esteira_core.settings import CoreSettings


class ApiSettings(CoreSettings):
    api_host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port the gateway listens on.")
    api_workers: int = Field(1, ge=1, description="uvicorn worker processes of the gateway.")
    readiness_timeout_seconds: float = Field(
        2.0, gt=0, description="How long /readyz waits for each dependency."
    )
    timezone: str = Field(
        "America/Sao_Paulo", description="Time zone whose today is the default reference date."
    )
    ruptura_max_orders: int = Field(
        50_000, ge=1, description="Most orders one ruptura session may hold (more: 413)."
    )
    ruptura_horizon_days: int = Field(28, ge=1, le=366, description="Days projected ahead.")
    ruptura_window_days: int = Field(
        7, ge=0, le=366, description="Look-ahead window of the rupture rule (the seeds' D7)."
    )
    ruptura_order_cache_seconds: int = Field(
        15, ge=0, description="How long one order analysed synchronously is cached (0: never)."
    )

    scrape_active_ttl_seconds: int = Field(
        1800,
        ge=60,
        description="Longest a scrape task may stay active; lookups of its OS join it meanwhile.",
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
    inline_scrape_limit: int = Field(
        1, ge=1, description="Scrapes one gateway process runs itself at once (beyond: 503)."
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

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

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

    def today(self) -> date:
        return datetime.now(ZoneInfo(self.timezone)).date()


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
