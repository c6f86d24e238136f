"""Turning an SQS message into handler records, whatever put it on the queue.

- SNS envelopes (`Type: Notification`): the record carries the inner message, with the topic,
  subject, SNS MessageId and the SNS message attributes;
- raw SNS delivery and plain SQS messages: the body, with the SQS message attributes;
- S3 event notifications (directly, or inside an SNS envelope): one record per S3 event record,
  with bucket, URL-decoded key, size and event name; `s3:TestEvent` is skipped;
- a body marked `content-transfer-encoding: base64` (what `forward` does with bytes) is decoded
  back to bytes first;
- then JSON, else text, else bytes. Nothing here raises on bad input: what does not decode stays
  text or bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from daemon.handlers.base import Record, RecordKind
from daemon.handlers.decode import decode_payload

ENCODING_ATTRIBUTE = "content-transfer-encoding"


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one SQS message holds for the handler."""

    records: list[Record] = field(default_factory=list)
    skip: str | None = None
    """Why the message needs no handling (an `s3:TestEvent`); it is deleted as is."""
    sns_message_id: str | None = None
    """The SNS MessageId of an enveloped notification (for dropping duplicate deliveries)."""


def decode_message(message: dict[str, Any], *, queue: str) -> Decoded:
    message_id = str(message.get("MessageId", ""))
    attributes = sqs_attributes(message.get("MessageAttributes") or {})
    raw = _body_bytes(str(message.get("Body", "")), attributes)
    meta = system_meta(message.get("Attributes") or {})
    meta["queue"] = queue
    kind, text, data = decode_payload(raw)

    if isinstance(data, dict) and _is_sns_envelope(data):
        return _from_sns(message_id, data, meta)
    if isinstance(data, dict) and data.get("Event") == "s3:TestEvent":
        return Decoded(skip="s3:TestEvent")
    s3 = _s3_records(data)
    if s3:
        return Decoded(_s3(message_id, s3, attributes, meta))
    return Decoded([Record("sqs", message_id, raw, kind, text, data, attributes, meta)])


def sqs_attributes(raw: dict[str, Any]) -> dict[str, str]:
    """SQS message attributes as strings (binary values base64-encoded)."""
    out: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(value, dict):
            continue
        if "StringValue" in value:
            out[name] = str(value["StringValue"])
        elif "BinaryValue" in value:
            binary = value["BinaryValue"]
            out[name] = (
                base64.b64encode(binary).decode("ascii")
                if isinstance(binary, bytes | bytearray)
                else str(binary)
            )
    return out


def system_meta(attributes: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if "ApproximateReceiveCount" in attributes:
        meta["receive_count"] = _int(attributes["ApproximateReceiveCount"])
    if "SentTimestamp" in attributes:
        meta["sent_at"] = _iso_ms(attributes["SentTimestamp"])
    if "ApproximateFirstReceiveTimestamp" in attributes:
        meta["first_received_at"] = _iso_ms(attributes["ApproximateFirstReceiveTimestamp"])
    for key, name in (
        ("MessageGroupId", "group_id"),
        ("MessageDeduplicationId", "dedup_id"),
        ("SequenceNumber", "sequence_number"),
    ):
        if key in attributes:
            meta[name] = str(attributes[key])
    return meta


def _body_bytes(body: str, attributes: dict[str, str]) -> bytes:
    if attributes.get(ENCODING_ATTRIBUTE) == "base64":
        try:
            decoded = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            pass  # not base64 after all: keep what arrived
        else:
            del attributes[ENCODING_ATTRIBUTE]
            return decoded
    # SQS bodies are XML-safe Unicode; "surrogatepass" keeps anything odd as bytes, never raises.
    return body.encode("utf-8", "surrogatepass")


def _is_sns_envelope(data: dict[str, Any]) -> bool:
    return (
        data.get("Type") == "Notification"
        and isinstance(data.get("Message"), str)
        and isinstance(data.get("TopicArn"), str)
    )


def _from_sns(message_id: str, envelope: dict[str, Any], meta: dict[str, Any]) -> Decoded:
    sns_id = str(envelope.get("MessageId") or "") or None
    meta = {
        **meta,
        "topic_arn": envelope["TopicArn"],
        "message_id": sns_id,
        "subject": envelope.get("Subject"),
        "published_at": envelope.get("Timestamp"),
    }
    meta = {k: v for k, v in meta.items() if v is not None}
    attributes = {
        name: str(value.get("Value"))
        for name, value in (envelope.get("MessageAttributes") or {}).items()
        if isinstance(value, dict) and value.get("Value") is not None
    }
    inner = envelope["Message"]
    raw = inner.encode("utf-8", "surrogatepass")
    if attributes.get(ENCODING_ATTRIBUTE) == "base64":
        raw = _body_bytes(inner, attributes)
    kind, text, data = decode_payload(raw)
    if isinstance(data, dict) and data.get("Event") == "s3:TestEvent":
        return Decoded(skip="s3:TestEvent", sns_message_id=sns_id)
    s3 = _s3_records(data)
    if s3:
        return Decoded(_s3(message_id, s3, attributes, meta), sns_message_id=sns_id)
    record_kind: RecordKind = "sns" if kind != "bytes" else "bytes"
    record = Record("sqs", message_id, raw, record_kind, text, data, attributes, meta)
    return Decoded([record], sns_message_id=sns_id)


def _s3_records(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get("Records"), list):
        return []
    records = [
        r
        for r in data["Records"]
        if isinstance(r, dict)
        and r.get("eventSource") == "aws:s3"
        and isinstance(r.get("s3"), dict)
    ]
    return records if len(records) == len(data["Records"]) else []


def _s3(
    message_id: str, events: list[dict[str, Any]], attributes: dict[str, str], meta: dict[str, Any]
) -> list[Record]:
    out = []
    for i, event in enumerate(events):
        s3 = event["s3"]
        bucket = s3.get("bucket") if isinstance(s3.get("bucket"), dict) else {}
        obj = s3.get("object") if isinstance(s3.get("object"), dict) else {}
        # Keys arrive URL-encoded with '+' for spaces ("my+file%3A1.txt" is "my file:1.txt").
        key = unquote_plus(str(obj.get("key", "")))
        s3_meta = {
            **meta,
            "bucket": bucket.get("name"),
            "key": key,
            "size": obj.get("size"),
            "event_name": event.get("eventName"),
            "event_time": event.get("eventTime"),
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        record_id = message_id if len(events) == 1 else f"{message_id}#{i}"
        out.append(
            Record(
                "sqs",
                record_id,
                body,
                "s3",
                body.decode(),
                event,
                dict(attributes),
                {k: v for k, v in s3_meta.items() if v is not None},
            )
        )
    return out


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _iso_ms(value: Any) -> str | None:
    millis = _int(value)
    if millis is None:
        return None
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"
