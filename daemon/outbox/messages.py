"""What goes into the outbox and what comes out of it: the message a producer hands over, the
events the outbox publishes as messages leave, and the refusals a producer may get.

Every refusal is an `OutboxFull`, so a producer that keeps what it had and retries later
(an SQS message not acked, a reading kept) needs one `except`; the endpoint and the command
line tell the kinds apart (507 and exit 74 for a full state directory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.core.events import Event
from daemon.core.storage import StateDirFull


class OutboxFull(Exception):
    """The message was not accepted: the outbox stayed full for `block_timeout` seconds (or,
    in the subclasses, its file cannot take it). Producers keep what they had and retry."""


class OutboxDiskFull(OutboxFull):
    """The state directory's file system is full (or below `outbox.min_free_bytes`)."""

    def __init__(self, cause: StateDirFull) -> None:
        super().__init__(str(cause))
        self.free = cause.free


class OutboxUnavailable(OutboxFull):
    """The outbox file cannot be opened or written (not for lack of space)."""


@dataclass(frozen=True, slots=True)
class Message:
    """What a producer hands to the outbox."""

    kind: str
    """The sender that delivers it: `sns`, `sms`, `sqs`, `kinesis`."""
    target: str
    """Topic, phone number, queue or stream: a name, an ARN or a URL, as the sender takes it."""
    body: dict[str, Any]
    """The kind-specific payload (see the sender's `validate`)."""
    origin: str = ""
    """Who put it (a worker name): echoed in OutboxDelivered / OutboxRejected events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxDelivered(Event):
    item_id: int
    kind: str
    target: str
    origin: str
    message_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRejected(Event):
    item_id: int
    kind: str
    target: str
    origin: str
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxDropped(Event):
    item_id: int
    kind: str
    target: str
    origin: str
    reason: str
    """A `DropReason`."""
