"""The README documents every ESTEIRA_ variable a process reads."""

from pathlib import Path

from pydantic_settings import BaseSettings

from esteira_api.settings import ApiSettings
from esteira_core.settings import WorkerPoolSettings
from esteira_portal.settings import PortalSettings
from esteira_ruptura.settings import RupturaWorkerSettings
from esteira_scraping.profile import PortalCredentials, ProfileSettings
from esteira_scraping.settings import ScraperWorkerSettings

README = Path(__file__).parents[1] / "README.md"


def _variables(settings: type[BaseSettings]) -> set[str]:
    prefix = settings.model_config.get("env_prefix", "")
    return {
        (field.alias or f"{prefix}{name}").upper() for name, field in settings.model_fields.items()
    }


def test_every_setting_is_documented() -> None:
    text = README.read_text()
    variables = set().union(
        *(
            _variables(s)
            for s in (
                ApiSettings,
                WorkerPoolSettings,
                RupturaWorkerSettings,
                PortalSettings,
                ScraperWorkerSettings,
                PortalCredentials,
                ProfileSettings,
            )
        )
    )
    assert len(variables) > 20
    assert sorted(v for v in variables if f"`{v}`" not in text) == []
