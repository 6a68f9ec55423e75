"""The demo "legacy portal": what the scraper drives in dev, tests and demos.

Like the seed's portal it has a login form (login_username, login_password, an "Entrar" button),
a JavaScript-rendered search (the page's HTML holds no data, so plain HTTP scraping gets nothing),
a details card of `LABEL: value` paragraphs and a "não encontrada" message. Switches inject
latency, errors, garbage, hangs and session expiry.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from esteira_portal import records
from esteira_portal.settings import PortalSettings, Switches

logger = logging.getLogger(__name__)
SESSION_COOKIE = "portal_session"
STATIC = Path(__file__).with_name("static")


@dataclass
class PortalState:
    settings: PortalSettings
    switches: Switches
    sessions: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)
    logins: int = 0
    lookups: int = 0
    failed_logins: int = 0

    def session_valid(self, token: str | None) -> bool:
        expiry = self.sessions.get(token or "")
        return expiry is not None and expiry > time.monotonic()


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html><html lang="pt-BR"><head><meta charset="utf-8">
<title>{escape(title)}</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/portal.css"></head>
<body><header><h1>Portal de Ordens de Serviço</h1></header><main>{body}</main></body></html>"""
    )


def _login_form(message: str = "") -> str:
    notice = f'<p class="aviso" role="alert">{escape(message)}</p>' if message else ""
    return f"""{notice}<form method="post" action="/login" class="login">
<label for="login_username">Usuário</label>
<input id="login_username" name="username" autocomplete="username">
<label for="login_password">Senha</label>
<input id="login_password" name="password" type="password" autocomplete="current-password">
<button type="submit">Entrar</button></form>"""


def create_app(settings: PortalSettings | None = None) -> FastAPI:
    settings = settings or PortalSettings()
    state = PortalState(settings=settings, switches=settings.switches())
    app = FastAPI(title="Demo legacy portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.portal = state
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> RedirectResponse:
        logged_in = state.session_valid(request.cookies.get(SESSION_COOKIE))
        return RedirectResponse("/app" if logged_in else "/login", status_code=303)

    @app.get("/login", include_in_schema=False)
    async def login_page(expired: int = 0) -> HTMLResponse:
        return _page("Login", _login_form("Sessão expirada, entre novamente." if expired else ""))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        username = form.get("username", [""])[0]
        password = form.get("password", [""])[0]
        expected = settings.password.get_secret_value()
        if not (
            hmac.compare_digest(username, settings.username)
            and hmac.compare_digest(password.encode(), expected.encode())
        ):
            state.failed_logins += 1
            page = _page("Login", _login_form("Usuário ou senha inválidos."))
            page.status_code = 401
            return page
        token = secrets.token_urlsafe(24)
        state.sessions[token] = time.monotonic() + state.switches.session_ttl_seconds
        state.logins += 1
        response = RedirectResponse("/app", status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax")
        return response

    @app.get("/app", include_in_schema=False)
    async def spa(request: Request) -> Response:
        if not state.session_valid(request.cookies.get(SESSION_COOKIE)):
            return RedirectResponse("/login?expired=1", status_code=303)
        return _page(
            "Consulta de OS",
            '<div id="root" aria-live="polite"></div><script src="/static/app.js"></script>',
        )

    @app.get("/api/os/{numero_os}", include_in_schema=False)
    async def lookup(numero_os: str, request: Request) -> JSONResponse:
        if not state.session_valid(request.cookies.get(SESSION_COOKIE)):
            return JSONResponse({"erro": "sessão expirada"}, status_code=401)
        state.lookups += 1
        switches = state.switches
        if switches.latency_ms:
            await asyncio.sleep(switches.latency_ms / 1000)
        roll = random.random()
        if roll < switches.hang_rate:
            await asyncio.sleep(3600)
        roll = random.random()
        if roll < switches.error_rate:
            return JSONResponse({"erro": "Erro interno do portal"}, status_code=500)
        if random.random() < switches.garbage_rate:
            return JSONResponse({"campos": [["%$#", "\u0000?"], ["", "lorem"]]})
        fields = records.find(numero_os, settings.records)
        if fields is None:
            return JSONResponse({"erro": f"OS {numero_os} não encontrada"}, status_code=404)
        return JSONResponse({"campos": fields})

    @app.get("/admin/switches", include_in_schema=False)
    async def get_switches() -> Switches:
        return state.switches

    @app.put("/admin/switches", include_in_schema=False)
    async def put_switches(switches: Switches) -> Switches:
        state.switches = switches
        logger.info("switches changed", extra=switches.model_dump())
        return switches

    @app.post("/admin/expire-sessions", include_in_schema=False)
    async def expire_sessions() -> dict[str, int]:
        expired = len(state.sessions)
        state.sessions.clear()
        return {"expired": expired}

    @app.get("/admin/stats", include_in_schema=False)
    async def stats() -> dict[str, int]:
        return {
            "logins": state.logins,
            "failed_logins": state.failed_logins,
            "lookups": state.lookups,
            "sessions": len(state.sessions),
        }

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
