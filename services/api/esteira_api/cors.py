"""Cross-origin access for the browser client: an existing front end on another origin (the ERP's
pages) loads esteira.js from the gateway and calls it with its own API key.

Only the origins in `ESTEIRA_CORS_ORIGINS` are allowed (none by default). The key travels in
`Authorization`, never in a cookie, so credentials mode stays off and `*` is acceptable for a
gateway whose every route but the probes wants a key.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from esteira_api.middleware import REQUEST_ID_HEADER

ALLOWED_METHODS = ["GET", "POST", "PUT", "DELETE"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", REQUEST_ID_HEADER]
# What a cross-origin script may read besides the CORS-safelisted headers: the request id to
# quote in a support ticket, when to retry, and how long a long poll waited.
EXPOSED_HEADERS = [REQUEST_ID_HEADER, "Retry-After", "Server-Timing"]
PREFLIGHT_CACHE_SECONDS = 600


def parse_origins(value: str) -> list[str]:
    """`https://a.example, https://b.example:8443` -> the origins, without a trailing slash."""
    origins = [entry.strip().rstrip("/") for entry in value.split(",")]
    return [origin for origin in origins if origin]


def install_cors(app: FastAPI, origins: str) -> None:
    """Answers preflights and adds the CORS headers for the configured origins; nothing when
    none is configured. Installed last, so it wraps every other middleware and even a 401, 413
    or 429 reaches the calling page readable."""
    allowed = parse_origins(origins)
    if not allowed:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=allowed,
        allow_methods=ALLOWED_METHODS,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_credentials=False,
        max_age=PREFLIGHT_CACHE_SECONDS,
    )
