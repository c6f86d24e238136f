"""Decoding a payload once, as far as it decodes: JSON, else text, else bytes. Never raises.

Shared by the sources (SQS poller, Kinesis reader) so every handler sees the same `kind`,
`text` and `data` for the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from daemon.handlers.base import RecordKind

_JSON_START = frozenset(b'{["-0123456789tfn')


def decode_payload(body: bytes) -> tuple[RecordKind, str | None, Any]:
    """(`json`, text, parsed) | (`text`, text, None) | (`bytes`, None, None)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes", None, None
    stripped = text.lstrip()
    if stripped and ord(stripped[0]) < 128 and stripped.encode()[0] in _JSON_START:
        try:
            return "json", text, json.loads(text)
        except (ValueError, RecursionError):
            pass
    return "text", text, None
