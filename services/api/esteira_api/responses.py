"""JSON answers built without FastAPI's second pass over them: stored JSON documents carried
without decoding them, and a model serialised once."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Response
from pydantic import BaseModel


def json_with_documents(envelope: dict[str, Any], key: str, documents: list[bytes]) -> Response:
    """`envelope` plus `key`: [documents...], where each document is already JSON (bytes)."""
    head = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
    if envelope:
        head = head[:-1] + ","
    else:
        head = "{"
    body = b"".join((head.encode(), json.dumps(key).encode(), b":[", b",".join(documents), b"]}"))
    return Response(body, media_type="application/json")


def model_json(model: BaseModel) -> Response:
    """The model as JSON, serialised once by pydantic. A route that returns the model itself has
    FastAPI validate it again against its response model and then encode it: on the polls front
    ends make most, that second pass cost more than the Redis round trip. The route declares the
    model as its `response_model`, so the OpenAPI document is the same."""
    return Response(model.model_dump_json(), media_type="application/json")
