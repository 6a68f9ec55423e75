"""JSON instead of pickle for everything arq stores: readable from any language, and a message
from Redis can never execute code in a worker."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def _to_json(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BaseException):
        # arq stores a failed job's exception as its result; keep its type and message only.
        return {"exception": type(value).__name__, "message": str(value)}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def serialize_job(data: dict[str, Any]) -> bytes:
    return json.dumps(data, default=_to_json, separators=(",", ":")).encode()


def deserialize_job(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("an arq record must be a JSON object")
    return value
