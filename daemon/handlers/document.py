"""A record as a JSON document, for programs and webhooks that want more than the body.

`{"source", "id", "kind", "body" (text, or base64 when the body is not UTF-8), "encoding"
("utf-8" | "base64"), "data" (parsed JSON, or the S3 event record), "attributes", "meta"}`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from daemon.handlers.base import Record


def record_document(record: Record) -> dict[str, Any]:
    if record.text is not None:
        body, encoding = record.text, "utf-8"
    else:
        body, encoding = base64.b64encode(record.body).decode("ascii"), "base64"
    return {
        "source": record.source,
        "id": record.id,
        "kind": record.kind,
        "body": body,
        "encoding": encoding,
        "data": record.data,
        "attributes": record.attributes,
        "meta": record.meta,
    }


def record_json(record: Record) -> bytes:
    return json.dumps(record_document(record), default=str, separators=(",", ":")).encode()


def content_type(record: Record) -> str:
    """The Content-Type of the record's body as it would be sent on."""
    if record.text is None:
        return "application/octet-stream"
    if record.data is not None:
        return "application/json"
    return "text/plain; charset=utf-8"
