"""The demo portal's settings. Its switches (latency, errors, hangs, session expiry) start from
these and can be changed at run time through /admin/switches."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Switches(BaseModel):
    latency_ms: int = Field(0, ge=0, le=60_000, description="Delay added to every lookup.")
    error_rate: float = Field(0.0, ge=0, le=1, description="Share of lookups answered with 500.")
    garbage_rate: float = Field(0.0, ge=0, le=1, description="Share of lookups answered nonsense.")
    hang_rate: float = Field(0.0, ge=0, le=1, description="Share of lookups that never answer.")
    session_ttl_seconds: float = Field(
        1800, gt=0, description="How long a login lasts before the portal asks for it again."
    )


class PortalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESTEIRA_PORTAL_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the portal listens on.")
    port: int = Field(8100, ge=1, le=65535, description="Port the portal listens on.")
    username: str = Field("demo", description="The portal's login.")
    password: SecretStr = Field(SecretStr("demo"), description="The portal's password.")
    records: int = Field(5000, ge=1, le=1_000_000, description="OS records the portal holds.")
    latency_ms: int = 0
    error_rate: float = 0.0
    garbage_rate: float = 0.0
    hang_rate: float = 0.0
    session_ttl_seconds: float = 1800
    log_level: str = Field("INFO", alias="ESTEIRA_LOG_LEVEL")
    log_format: str = Field("json", alias="ESTEIRA_LOG_FORMAT")

    def switches(self) -> Switches:
        return Switches(
            latency_ms=self.latency_ms,
            error_rate=self.error_rate,
            garbage_rate=self.garbage_rate,
            hang_rate=self.hang_rate,
            session_ttl_seconds=self.session_ttl_seconds,
        )
