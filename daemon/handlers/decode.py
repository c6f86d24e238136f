"""Decoding a payload once, as far as it decodes: JSON, else text, else bytes. Never raises.

The one decoder of the sources (SQS poller, Kinesis reader), so every handler sees the same
`kind`, `text` and `data` for the same bytes. Deeply nested JSON that would exhaust Python's
recursion limit stays text.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from daemon.handlers.base import RecordKind

Decoder = Literal["json", "text", "bytes"]
"""How far a source asks to decode: `json` (the default), `text` only, or leave the `bytes`."""

_JSON_START = frozenset('{["-0123456789tfn')
"""What JSON can start with (after whitespace): anything else is not worth a parse attempt."""


def decode_payload(body: bytes, decoder: Decoder = "json") -> tuple[RecordKind, str | None, Any]:
    """(`json`, text, parsed) | (`text`, text, None) | (`bytes`, None, None), as far as
    `decoder` asks and the bytes allow."""
    if decoder == "bytes":
        return "bytes", None, None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes", None, None
    if decoder == "text":
        return "text", text, None
    stripped = text.lstrip()
    if stripped and stripped[0] in _JSON_START:
        try:
            return "json", text, json.loads(text)
        except (ValueError, RecursionError):
            pass
    return "text", text, None
