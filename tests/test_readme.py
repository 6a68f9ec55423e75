"""The README documents every ESTEIRA_ variable a process reads, and the chart sets no other."""

from pathlib import Path

from pydantic_settings import BaseSettings

from esteira_api.settings import ApiSettings
from esteira_core.settings import WorkerPoolSettings
from esteira_devtools import chart
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


def _every_setting() -> set[str]:
    return set().union(
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


def test_every_setting_is_documented() -> None:
    text = README.read_text()
    variables = _every_setting()
    assert len(variables) > 20
    assert sorted(v for v in variables if f"`{v}`" not in text) == []


def test_every_variable_the_chart_sets_is_a_setting() -> None:
    """A misspelt name in the chart would be ignored by every process, silently."""
    settings = _every_setting()
    set_by_chart: set[str] = set()
    for values in chart.scenarios().values():
        for obj in chart.render(values):
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].endswith("-config"):
                set_by_chart |= set(obj["data"])
            if obj["kind"] == "Deployment":
                pod = obj["spec"]["template"]["spec"]
                for container in pod.get("initContainers", []) + pod["containers"]:
                    set_by_chart |= {entry["name"] for entry in container.get("env", [])}
    esteira = {name for name in set_by_chart if name.startswith("ESTEIRA_")}
    assert {"ESTEIRA_RUPTURA_FAIR_WINDOW", "ESTEIRA_TENANT_MAX_QUEUED_LOOKUPS"} <= esteira
    assert sorted(esteira - settings) == []
