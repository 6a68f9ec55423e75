"""JSON answers that carry stored JSON documents without decoding them."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Response


def json_with_documents(envelope: dict[str, Any], key: str, documents: list[bytes]) -> Response:
    """`envelope` plus `key`: [documents...], where each document is already JSON (bytes)."""
    head = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
    if envelope:
        head = head[:-1] + ","
    else:
        head = "{"
    body = b"".join((head.encode(), json.dumps(key).encode(), b":[", b",".join(documents), b"]}"))
    return Response(body, media_type="application/json")
