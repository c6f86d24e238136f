"""The one handler interface, shared by the SQS poller and the Kinesis reader.

A source turns what it received into a `Record` (decoded once, as far as it can be decoded:
invalid UTF-8 stays bytes, invalid JSON stays text, never an exception) and calls
`await handler.handle(record)`. Returning means success (the source acks or checkpoints);
raising means failure (the source applies its failure policy: visibility back-off, redrive,
retry). Handlers must be cancellable: sources cancel them at their timeout.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Literal

RecordKind = Literal["sns", "s3", "json", "text", "bytes"]


@dataclass(frozen=True, slots=True)
class Record:
    """One input to a handler."""

    source: Literal["sqs", "kinesis"]
    """Where it came from."""
    id: str
    """SQS MessageId or Kinesis sequence number (with sub-sequence for aggregated records)."""
    body: bytes
    """The payload as received (for SNS envelopes: the inner message)."""
    kind: RecordKind
    """What decoding found: an SNS notification, an S3 event, JSON, text or bytes."""
    text: str | None = None
    """`body` as text when it is valid UTF-8."""
    data: Any = None
    """`body` parsed as JSON when it is JSON (for `s3`: the event record)."""
    attributes: dict[str, str] = field(default_factory=dict)
    """Message attributes (SQS, or SNS's for enveloped messages)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Source details: queue, receive_count, group_id, sent_at; stream, shard, partition_key,
    arrival; sns topic_arn, subject, message_id; s3 bucket, key, size, event_name."""


class HandlerError(Exception):
    """A handler failed in a way worth a clear one-line log (the source still retries)."""


class Handler(abc.ABC):
    """Does something with each record. Built once per worker run; closed when it stops."""

    name: str = ""

    @abc.abstractmethod
    async def handle(self, record: Record) -> None:
        """Process one record; raise to report failure."""

    async def close(self) -> None:  # noqa: B027 - an optional hook: most handlers hold nothing
        """Release what the handler holds (sessions, subprocesses)."""
