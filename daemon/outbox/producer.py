"""Producing to a stream: partition keys and the `kinesis` outbox message.

Whoever builds a record (readings, a `forward` handler, `awsd publish --stream`, a custom worker)
picks its partition key here and hands the message to the outbox; the outbox's `kinesis` sender
(`daemon/outbox/senders/kinesis.py`) delivers it with PutRecords. Records of one partition key
land on one shard, in order; a random key spreads load over every shard with no order between
records.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from daemon.config.partition import PartitionKeyConfig
from daemon.outbox.messages import Message

MAX_KEY_CHARS = 256


def partition_key(cfg: PartitionKeyConfig, data: Any = None) -> str:
    """The key for one record: fixed, random, or a field of its JSON body (random if absent)."""
    if cfg.source == "fixed" and cfg.value:
        return cfg.value
    if cfg.source == "field" and cfg.field:
        value = data
        for part in cfg.field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and value != "":
            return str(value)[:MAX_KEY_CHARS]
    return uuid.uuid4().hex


def kinesis_message(
    stream: str,
    payload: bytes | str | dict[str, Any] | list[Any],
    *,
    key: PartitionKeyConfig | None = None,
    explicit_hash_key: str | None = None,
    origin: str = "",
) -> Message:
    """An outbox message putting `payload` (bytes, text, or a JSON value) on `stream`."""
    parsed: Any = None
    if isinstance(payload, dict | list):
        parsed = payload
        raw = json.dumps(payload, separators=(",", ":")).encode()
    elif isinstance(payload, str):
        raw = payload.encode()
    else:
        raw = payload
    if parsed is None and key is not None and key.source == "field":
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
    body: dict[str, Any] = {
        "data": base64.b64encode(raw).decode(),
        "partition_key": partition_key(key or PartitionKeyConfig(), parsed),
    }
    if explicit_hash_key is not None:
        body["explicit_hash_key"] = explicit_hash_key
    return Message("kinesis", stream, body, origin=origin)
