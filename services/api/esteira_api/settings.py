"""The gateway's settings: the core ones plus where it listens and how long it waits."""

from __future__ import annotations

from functools import lru_cache

from esteira_core.settings import CoreSettings
from pydantic import Field


class ApiSettings(CoreSettings):
    api_host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port the gateway listens on.")
    api_workers: int = Field(1, ge=1, description="uvicorn worker processes of the gateway.")
    readiness_timeout_seconds: float = Field(
        2.0, gt=0, description="How long /readyz waits for each dependency."
    )


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
