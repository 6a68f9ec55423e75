"""/docs (Swagger UI) and /redoc from assets installed with the gateway, not from a CDN: an
operator behind a proxy, or on a laptop offline, still gets working API docs.

The assets come from the `fastapi-offline` package (Swagger UI and ReDoc bundles, MIT); only its
static folder is used. FastAPI's own /docs and /redoc routes (which load from a CDN) are
replaced, so `create_app` keeps FastAPI's defaults and calls `install_offline_docs` once.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

ASSETS_URL = "/static-docs"
# ReDoc shows a logo from its vendor's CDN; offline that is a failed request, so images may come
# from the gateway only (ReDoc then leaves the logo out).
_IMAGES_FROM_HERE = '<meta http-equiv="Content-Security-Policy" content="img-src \'self\' data:">'


def assets_dir() -> Path:
    return Path(str(files("fastapi_offline").joinpath("static")))


def _is_cdn_docs(route: BaseRoute, paths: set[str | None]) -> bool:
    return isinstance(route, Route) and route.path in paths


def _images_from_here(page: HTMLResponse) -> HTMLResponse:
    html = bytes(page.body).decode().replace("<head>", "<head>\n" + _IMAGES_FROM_HERE, 1)
    return HTMLResponse(html)


def install_offline_docs(app: FastAPI) -> None:
    docs_url, redoc_url = app.docs_url, app.redoc_url
    app.router.routes[:] = [
        r for r in app.router.routes if not _is_cdn_docs(r, {docs_url, redoc_url})
    ]
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    if docs_url:

        @app.get(docs_url, include_in_schema=False)
        async def swagger_ui(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            page = get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url,
                swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                # Swagger UI would send the document to an online validator for its badge.
                swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
            )
            return _images_from_here(page)

    if redoc_url:

        @app.get(redoc_url, include_in_schema=False)
        async def redoc(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            page = get_redoc_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
            return _images_from_here(page)
