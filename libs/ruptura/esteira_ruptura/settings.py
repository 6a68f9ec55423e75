"""What a ruptura analysis is configured with, wherever it runs (a worker, or the gateway)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator

from esteira_core.errors import Invalid
from esteira_core.settings import CoreSettings, WorkerPoolSettings
from esteira_ruptura.projection import Horizon


class RupturaSettings(CoreSettings):
    timezone: str = Field(
        "America/Sao_Paulo", description="Time zone whose today is the default reference date."
    )
    ruptura_max_orders: int = Field(
        100_000,
        ge=1,
        description="Most orders one ruptura session may hold (more: 413): a 100,000-order "
        "carteira fits in one session.",
    )
    ruptura_fair_window: int = Field(
        32,
        ge=1,
        description="Ruptura batches in arq's queue (ready or running) per worker online; the "
        "rest wait in the fair queue, where tenants take turns.",
    )
    tenant_max_queued_orders: int = Field(
        200_000,
        ge=1,
        description="Orders one tenant may have waiting to start (more: 429).",
    )
    ruptura_horizon_days: int = Field(28, ge=1, le=366, description="Days projected ahead.")
    ruptura_window_days: int = Field(
        7, ge=0, le=366, description="Look-ahead window of the rupture rule (the seeds' D7)."
    )
    ruptura_order_cache_seconds: int = Field(
        15, ge=0, description="How long one order analysed synchronously is cached (0: never)."
    )
    ruptura_source_url: str | None = Field(
        None,
        description="SQLAlchemy URL of a team's own database to read the carteira from, "
        "through ESTEIRA_RUPTURA_SOURCE_PROFILE (unset: Esteira's own tables).",
    )
    ruptura_source_password: SecretStr | None = Field(
        None, description="Its password; overrides one in ESTEIRA_RUPTURA_SOURCE_URL."
    )
    ruptura_source_profile: Path | None = Field(
        None, description="YAML source profile: the read-only queries run on that database."
    )

    @model_validator(mode="after")
    def _source_complete(self) -> RupturaSettings:
        if (self.ruptura_source_url is None) != (self.ruptura_source_profile is None):
            raise ValueError(
                "ESTEIRA_RUPTURA_SOURCE_URL and ESTEIRA_RUPTURA_SOURCE_PROFILE go together: "
                "set both to read the carteira from a team's database, or neither"
            )
        return self

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def today(self) -> date:
        return datetime.now(ZoneInfo(self.timezone)).date()

    def horizon(self, reference: date | None = None) -> Horizon:
        """The days a session or an order is judged on, from `reference` (default: today)."""
        horizon = Horizon(
            reference or self.today(), self.ruptura_horizon_days, self.ruptura_window_days
        )
        try:
            horizon.day(horizon.days + horizon.window)
        except OverflowError:
            raise Invalid(
                "reference_date_out_of_range",
                f"reference_date {horizon.start} leaves no room for a {horizon.days}-day horizon.",
            ) from None
        return horizon


class RupturaWorkerSettings(RupturaSettings, WorkerPoolSettings):
    """A ruptura worker process: where it reads the carteira, plus what every worker needs."""
