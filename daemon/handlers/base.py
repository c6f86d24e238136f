"""The one handler interface, shared by the SQS poller and the Kinesis reader.

A source turns what it received into a `Record` (decoded once, as far as it can be decoded:
invalid UTF-8 stays bytes, invalid JSON stays text, never an exception) and calls
`await handler.handle(record)`. Returning means success (the source acks or checkpoints);
raising means failure (the source applies its failure policy: visibility back-off, redrive,
retry). Handlers must be cancellable: sources cancel them at their timeout.

A `BufferingHandler` (the S3 archive) writes in batches: it adds `accept`/`flush`, and a source
counts a record as done only after the flush that covers it (see its docstring).
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


class BufferingHandler(Handler):
    """A handler that writes records in batches (the S3 archive): the batch/flush contract.

    `accept(record, scope)` only takes custody of a record, in a buffer per `scope` (a Kinesis
    shard). A record is done only once a later `flush(scope)` has returned: a source checkpoints
    (or acks) what it accepted only after that, so nothing is lost when the process dies with a
    partial buffer — the records are simply read again. The source asks `ready(scope, now)`
    after each record and when idle (at the latest `due_in(scope, now)` seconds later) and
    flushes then; it flushes at the end of a shard and on a graceful stop, and calls
    `discard(scope)` when it lost the right to the records (a lease taken by another daemon).
    `flush` raising means nothing of the batch counts as done; the buffer is kept for a retry.
    A source never accepts into a scope while a flush of that scope runs (one task per scope).

    `handle(record)` (the plain interface) accepts and flushes at once, so a source that does
    not know this contract still only sees success once the record is durable.
    """

    @abc.abstractmethod
    async def accept(self, record: Record, scope: str) -> None:
        """Buffer a record (may raise, like `handle`)."""

    @abc.abstractmethod
    def ready(self, scope: str, now: float) -> bool:
        """Whether `scope`'s buffer should be flushed now (its size or age limit reached)."""

    @abc.abstractmethod
    def due_in(self, scope: str, now: float) -> float | None:
        """Seconds until `scope`'s buffer is due by age; None when it is empty."""

    @abc.abstractmethod
    async def flush(self, scope: str) -> None:
        """Make everything accepted for `scope` durable; raise and keep it on failure."""

    @abc.abstractmethod
    def discard(self, scope: str) -> None:
        """Forget what is buffered for `scope`, unwritten."""

    async def handle(self, record: Record) -> None:
        scope = str(record.meta.get("shard") or record.source)
        await self.accept(record, scope)
        await self.flush(scope)
