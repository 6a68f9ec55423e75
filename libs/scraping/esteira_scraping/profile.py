"""The portal profile: where the portal is, how to find things on its pages, and which label
means which field. Credentials come from the environment (a Kubernetes Secret in a cluster) and
never leave this object as text: they are SecretStr, typed into the login form and nowhere else.

The default profile drives dev/portal; another portal needs only a YAML file
(ESTEIRA_PORTAL_PROFILE) with the same keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Selenium's By values but the link texts (an XPath says the same: //a[normalize-space()='...']):
# the strategies a script in the page can look up too, so that waiting for one of several
# locators is one script run, not a WebDriver round trip per locator and poll.
Strategy = Literal["id", "xpath", "css selector", "class name", "name", "tag name"]
Locator = tuple[Strategy, str]


class Locators(BaseModel):
    """Selenium locators as (strategy, value)."""

    username: Locator = ("id", "login_username")
    password: Locator = ("id", "login_password")
    submit: Locator = ("xpath", "//button[normalize-space()='Entrar']")
    login_refused: Locator = ("class name", "aviso")
    search_input: Locator = ("id", "numero_os")
    search_button: Locator = ("id", "buscar")
    details: Locator = ("id", "detalhes")
    not_found: Locator = ("class name", "nao-encontrada")
    error: Locator = ("class name", "erro")


DEFAULT_FIELDS = {
    "OS": "numero_os",
    "CLIENTE": "cliente",
    "CNPJ": "cnpj",
    "TIPO DO EQUIPAMENTO": "tipo_equipamento",
    "DESCRIÇÃO": "descricao",
    "FABRICANTE": "fabricante",
    "MODELO": "modelo",
    "NUMERO DE SERIE": "numero_serie",
    "MUNICIPIO": "municipio",
    "STATUS DA OS": "status_os",
}


class PortalProfile(BaseModel):
    base_url: str = "http://127.0.0.1:8100"
    login_path: str = "/login"
    app_path: str = "/app"
    locators: Locators = Field(default_factory=Locators)
    fields: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_FIELDS),
        description="Label shown by the portal -> field name; other labels are kept raw only.",
    )
    submit_with_enter: bool = Field(
        True, description="The search form submits on Enter (else its button is clicked)."
    )
    typing: Literal["insert", "keys"] = Field(
        "insert",
        description=(
            "How the OS number goes into the search field: `insert` as one text input (what a"
            " paste or an input method does: `input` events, no key events; cheap), `keys` key"
            " by key (keydown/keypress/keyup for every digit), for a portal that listens to"
            " keystrokes."
        ),
    )
    page_timeout_seconds: float = Field(30, gt=0)
    answer_timeout_seconds: float = Field(60, gt=0)

    @property
    def host(self) -> str:
        """What the global rate limit is keyed by."""
        return urlsplit(self.base_url).netloc

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


class PortalCredentials(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESTEIRA_PORTAL_", extra="ignore")

    username: str = Field("demo", description="Login of the portal account the scraper uses.")
    password: SecretStr = Field(SecretStr("demo"), description="Its password.")


class ProfileSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESTEIRA_", extra="ignore")

    portal_url: str = Field("http://127.0.0.1:8100", description="The portal's base URL.")
    portal_profile: Path | None = Field(
        None, description="YAML file with a portal profile (locators, labels, timeouts)."
    )


def load_profile(settings: ProfileSettings | None = None) -> PortalProfile:
    settings = settings or ProfileSettings()
    data: dict[str, Any] = {}
    if settings.portal_profile is not None:
        loaded = yaml.safe_load(settings.portal_profile.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError(f"{settings.portal_profile}: a portal profile must be a mapping")
        data = loaded
    data.setdefault("base_url", settings.portal_url)
    return PortalProfile.model_validate(data)
