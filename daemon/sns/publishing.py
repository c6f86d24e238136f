"""What a request to publish looks like, and the local ingest endpoint that accepts one.

`PublishRequest` is the event any worker (probes, the reconciler, custom workers) puts on the
event bus to have the SNS publisher publish something: to a topic, or as an SMS to a phone
number. The bus is for notifications and may drop when a subscriber lags (counted and logged);
a producer that must not lose a message calls `request.to_message(...)` and puts it into the
durable outbox itself (`await services.outbox.put(...)` returns once it is committed).

`POST /publish` on the loopback health server (`ingest.py`) takes the same requests as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from daemon.core.events import Event
from daemon.core.metrics import Registry

if TYPE_CHECKING:
    from daemon.outbox import Message
    from daemon.services import Services

SMS_TYPES = ("Transactional", "Promotional")
TEXT_FIELDS = (
    "topic",
    "phone",
    "subject",
    "group_id",
    "dedup_id",
    "sms_type",
    "sender_id",
    "stream",
    "partition_key",
)
"""The optional string fields of an ingest payload (`awsd publish` options of the same names)."""
FIELDS = frozenset({"message", "attributes", *TEXT_FIELDS})


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishRequest(Event):
    """Publish `message` to `topic` (a name or ARN; unset: the publisher's default topic), or
    as an SMS to `phone` (E.164) when that is set."""

    message: str
    topic: str | None = None
    phone: str | None = None
    subject: str | None = None
    attributes: Mapping[str, str | int | float] = field(default_factory=dict)
    """SNS message attributes (at most 10); numbers are sent as Number attributes."""
    group_id: str | None = None
    """Message group id, required by FIFO topics."""
    dedup_id: str | None = None
    """FIFO deduplication id; unset: a hash of the message."""
    sms_type: str = "Transactional"
    """SMS only: `Transactional` (alerts, delivered even to DND numbers) or `Promotional`."""
    sender_id: str | None = None
    """SMS only: alphanumeric sender id, where the destination country supports it."""
    stream: str | None = None
    """Put the message on this Kinesis stream (a declared name or ARN) instead of SNS."""
    partition_key: str | None = None
    """Kinesis only: the record's partition key; unset: random (spread over every shard)."""

    def to_message(self, default_topic: str | None = None, *, origin: str = "") -> Message:
        """The outbox message for this request. Raises InvalidMessage when it names no
        destination; the sender's own checks run at `put`."""
        from daemon.outbox import InvalidMessage, Message  # noqa: PLC0415

        if self.stream:
            from daemon.config.partition import PartitionKeyConfig  # noqa: PLC0415
            from daemon.outbox.producer import kinesis_message  # noqa: PLC0415

            key = (
                PartitionKeyConfig(source="fixed", value=self.partition_key)
                if self.partition_key
                else None
            )
            return kinesis_message(self.stream, self.message, key=key, origin=origin or self.source)
        if self.phone:
            body: dict[str, Any] = {"message": self.message, "sms_type": self.sms_type}
            if self.sender_id:
                body["sender_id"] = self.sender_id
            return Message("sms", self.phone, body, origin or self.source)
        topic = self.topic or default_topic
        if not topic:
            raise InvalidMessage("no topic: name one, or set a default in sns.topic")
        body = {"message": self.message}
        for name in ("subject", "group_id", "dedup_id"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.attributes:
            body["attributes"] = dict(self.attributes)
        return Message("sns", topic, body, origin or self.source)


def notifiable_events() -> dict[str, type[Event]]:
    """The events of `daemon/core/events.py` the publisher can publish as text (with `text()`)."""
    import daemon.core.events as shared  # noqa: PLC0415

    return {
        name: cls
        for name, cls in vars(shared).items()
        if isinstance(cls, type)
        and issubclass(cls, Event)
        and cls is not Event
        and callable(getattr(cls, "text", None))
    }


def notification(event: Event, topic: str, *, origin: str) -> Message:
    """The outbox message for a notifiable event."""
    from daemon.outbox import Message  # noqa: PLC0415

    text: str = event.text()  # type: ignore[attr-defined]
    body = {"message": text, "attributes": {"awsd_event": type(event).__name__}}
    return Message("sns", topic, body, origin or event.source)


async def resolved(services: Services, message: Message) -> Message:
    """`message` with its topic as AWS knows it (a declared logical name becomes its AWS name)."""
    kinds: dict[str, Literal["topics", "streams"]] = {"sns": "topics", "kinesis": "streams"}
    if message.kind not in kinds:
        return message
    target = await services.targets.aws_name(kinds[message.kind], message.target)
    return replace(message, target=target) if target != message.target else message


def request_from_json(data: Any, *, source: str) -> PublishRequest:
    """A PublishRequest from an ingest payload; ValueError with a clear reason otherwise."""
    if not isinstance(data, dict):
        raise ValueError("a message must be a JSON object with at least 'message'")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(FIELDS))}"
        )
    message = data.get("message")
    if not isinstance(message, str) or not message:
        raise ValueError("'message' must be a non-empty string")
    for name in TEXT_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise ValueError(f"'{name}' must be a string")
    if sum(bool(data.get(name)) for name in ("topic", "phone", "stream")) > 1:
        raise ValueError("give one of 'topic', 'phone' or 'stream'")
    if data.get("partition_key") and not data.get("stream"):
        raise ValueError("'partition_key' goes with 'stream'")
    sns_only = [n for n in ("subject", "attributes", "group_id", "dedup_id") if data.get(n)]
    if data.get("stream") and sns_only:
        raise ValueError(f"{', '.join(sns_only)}: SNS fields, not for a Kinesis record")
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in attributes.values()
    ):
        raise ValueError("'attributes' must be an object of name: string or number")
    sms_type = data.get("sms_type") or "Transactional"
    if sms_type not in SMS_TYPES:
        raise ValueError("'sms_type' must be Transactional or Promotional")
    return PublishRequest(
        source=source,
        message=message,
        topic=data.get("topic"),
        phone=data.get("phone"),
        subject=data.get("subject"),
        attributes=attributes,
        group_id=data.get("group_id"),
        dedup_id=data.get("dedup_id"),
        sms_type=sms_type,
        sender_id=data.get("sender_id"),
        stream=data.get("stream"),
        partition_key=data.get("partition_key"),
    )


class PublishMetrics:
    """Counters shared by every way into the publisher (events, readings, ingest)."""

    def __init__(self, registry: Registry) -> None:
        self.accepted = registry.counter(
            "awsd_publish_accepted_total",
            "Messages the publisher put into the outbox, by source",
            ("source",),
        )
        self.refused = registry.counter(
            "awsd_publish_refused_total",
            "Messages the publisher could not accept (invalid, outbox full), by source",
            ("source", "reason"),
        )
