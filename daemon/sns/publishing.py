"""What a request to publish looks like, and the local ingest endpoint that accepts one.

`PublishRequest` is the event any worker (probes, the reconciler, custom workers) puts on the
event bus to have the SNS publisher publish something: to a topic, or as an SMS to a phone
number. The bus is for notifications and may drop when a subscriber lags (counted and logged);
a producer that must not lose a message calls `request.to_message(...)` and puts it into the
durable outbox itself (`await services.outbox.put(...)` returns once it is committed).

`POST /publish` on the loopback health server is what `awsd publish` talks to: it answers only
after the outbox committed the message (200 with its outbox id), or says why not (400 invalid or
oversize, 403 not allowed from there, 503 publisher not configured or outbox full).
`GET /publish/{id}` tells whether a message is still pending, delivered or dead.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from daemon.core.events import Event
from daemon.core.http import Handler
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
MAX_INGEST_MESSAGES = 500


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


def publish_routes(services: Callable[[], Services | None]) -> list[tuple[str, str, Handler]]:
    """POST /publish and GET /publish/{id} for the health server; `services` gives the current
    services (a reload replaces them)."""

    async def post(request: web.Request) -> web.Response:
        current = services()
        refusal = _refusal(request, current)
        if refusal is not None:
            return refusal
        assert current is not None and current.config.sns is not None
        metrics = PublishMetrics(current.metrics)
        try:
            requests = _parse(await request.read())
            messages = [r.to_message(current.config.sns.topic, origin="ingest") for r in requests]
            messages = [await resolved(current, m) for m in messages]
            _check(messages)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "request body larger than the 2 MiB the endpoint takes")
        except ValueError as exc:  # InvalidMessage is a ValueError
            metrics.refused.labels(source="ingest", reason="invalid").inc()
            return _error(400, str(exc))
        from daemon.outbox import InvalidMessage, OutboxFull  # noqa: PLC0415

        try:
            ids = await current.outbox.put_many(messages)
        except InvalidMessage as exc:
            metrics.refused.labels(source="ingest", reason="invalid").inc()
            return _error(400, str(exc))
        except OutboxFull as exc:
            metrics.refused.labels(source="ingest", reason="full").inc()
            return _error(503, str(exc), headers={"Retry-After": "5"})
        metrics.accepted.labels(source="ingest").inc(len(ids))
        targets = [f"{m.kind}:{m.target}" for m in messages]
        return web.json_response({"ids": ids, "targets": targets, "status": "accepted"})

    async def get(request: web.Request) -> web.Response:
        current = services()
        refusal = _refusal(request, current)
        if refusal is not None:
            return refusal
        assert current is not None
        try:
            item_id = int(request.match_info["id"])
        except ValueError:
            return _error(400, "the id is a number")
        status = await current.outbox.status(item_id)
        return web.json_response({"id": item_id, "status": status})

    return [("POST", "/publish", post), ("GET", "/publish/{id}", get)]


def _refusal(request: web.Request, services: Services | None) -> web.Response | None:
    if services is None or services.config.sns is None:
        return _error(503, "the SNS publisher is not configured (no [sns] section)")
    ingest = services.config.sns.ingest
    if ingest == "off":
        return _error(403, 'local ingest is off (sns.ingest = "off")')
    if ingest == "loopback" and not _is_loopback(request.remote):
        return _error(403, "publishing is only accepted from loopback (sns.ingest)")
    return None


def _parse(raw: bytes) -> list[PublishRequest]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError("the request body is not JSON") from None
    if isinstance(data, dict) and "messages" in data:
        items = data["messages"]
        if not isinstance(items, list) or not items:
            raise ValueError("'messages' must be a non-empty list")
        if len(items) > MAX_INGEST_MESSAGES:
            raise ValueError(f"at most {MAX_INGEST_MESSAGES} messages per request")
    else:
        items = [data]
    requests = []
    for i, item in enumerate(items):
        try:
            requests.append(request_from_json(item, source="ingest"))
        except ValueError as exc:
            raise ValueError(f"message {i}: {exc}" if len(items) > 1 else str(exc)) from None
    return requests


def _check(messages: list[Message]) -> None:
    """The senders' own checks, naming the message at fault in a batch."""
    from daemon.outbox.senders import SENDERS  # noqa: PLC0415

    for i, message in enumerate(messages):
        try:
            SENDERS[message.kind].validate(message.target, message.body)
        except ValueError as exc:
            raise ValueError(f"message {i}: {exc}" if len(messages) > 1 else str(exc)) from None


def _is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)
