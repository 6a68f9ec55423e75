"""JSON-line logging with the request or job id of the work being done.

`bind(request_id=...)` or `bind(job_id=...)` sets the id for the current task (contextvars), so
every line logged while serving that request or running that job carries it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_context: ContextVar[dict[str, str]] = ContextVar("esteira_log_context", default={})  # noqa: B039

# Attributes every LogRecord has; anything else passed in `extra=` is logged as a field.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@contextmanager
def bind(**fields: str) -> Iterator[None]:
    """Adds fields (request_id, job_id, ...) to every log line inside the block."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def context_fields() -> dict[str, str]:
    return dict(_context.get())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_context.get(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(f"{k}={v}" for k, v in _context.get().items())
        base = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        text = f"{base} [{ids}]" if ids else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


# Libraries whose DEBUG lines carry what they send: Selenium's remote connection logs each
# WebDriver command's body (the text typed into the portal's password field among them), and
# urllib3, websocket-client and httpcore log requests and frames. They log at INFO at most,
# whatever ESTEIRA_LOG_LEVEL says, so DEBUG never writes a secret.
SECRET_BEARING_LOGGERS = ("selenium", "urllib3", "websocket", "httpcore", "hpack")


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Routes every logger (ours, uvicorn's, arq's) to stderr in one format; libraries that
    would log what they send stay at INFO at most."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    floor = max(logging.INFO, root.level)
    for name in SECRET_BEARING_LOGGERS:
        logging.getLogger(name).setLevel(floor)
