"""Decoding SQS messages into records: every kind, and bad input that must not crash."""

from __future__ import annotations

import base64
import json
from typing import Any

from daemon.sqs.decode import decode_message


def sqs_message(body: str, attributes: dict[str, Any] | None = None, **system: str) -> dict:
    message: dict[str, Any] = {"MessageId": "m-1", "ReceiptHandle": "r", "Body": body}
    if attributes:
        message["MessageAttributes"] = attributes
    message["Attributes"] = {"ApproximateReceiveCount": "2", "SentTimestamp": "1700000000123"}
    message["Attributes"].update(system)
    return message


def envelope(message: str, **extra: Any) -> str:
    data = {
        "Type": "Notification",
        "MessageId": "sns-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:readings",
        "Subject": "hello",
        "Message": message,
        "Timestamp": "2026-01-01T00:00:00.000Z",
        "MessageAttributes": {"level": {"Type": "String", "Value": "high"}},
    }
    data.update(extra)
    return json.dumps(data)


def s3_event(key: str, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "eventSource": "aws:s3",
        "eventName": name,
        "eventTime": "2026-01-01T00:00:00.000Z",
        "s3": {"bucket": {"name": "photos"}, "object": {"key": key, "size": 42}},
    }


def test_sns_envelope_gives_the_inner_message_with_topic_subject_and_attributes():
    decoded = decode_message(sqs_message(envelope('{"t": 21.5}')), queue="q")
    (record,) = decoded.records
    assert record.kind == "sns" and record.data == {"t": 21.5} and record.body == b'{"t": 21.5}'
    assert record.attributes == {"level": "high"}
    assert record.meta["topic_arn"].endswith(":readings") and record.meta["subject"] == "hello"
    assert record.meta["message_id"] == "sns-1" and decoded.sns_message_id == "sns-1"
    assert record.meta["receive_count"] == 2 and record.meta["sent_at"].endswith(".123Z")
    text = decode_message(sqs_message(envelope("plain words")), queue="q").records[0]
    assert text.kind == "sns" and text.text == "plain words" and text.data is None


def test_raw_delivery_json_text_and_attributes():
    attrs = {
        "a": {"DataType": "String", "StringValue": "x"},
        "n": {"DataType": "Number", "StringValue": "5"},
        "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
    }
    record = decode_message(sqs_message('{"v": [1, 2]}', attrs), queue="q").records[0]
    assert record.kind == "json" and record.data == {"v": [1, 2]} and record.id == "m-1"
    assert record.attributes == {"a": "x", "n": "5", "b": "AAE="}
    assert record.meta["queue"] == "q"
    text = decode_message(sqs_message("just text"), queue="q").records[0]
    assert text.kind == "text" and text.text == "just text" and text.data is None


def test_invalid_json_stays_text_and_invalid_utf8_stays_bytes():
    broken = decode_message(sqs_message('{"unterminated": '), queue="q").records[0]
    assert broken.kind == "text" and broken.text == '{"unterminated": '
    payload = base64.b64encode(b"\xff\xfe\x00binary").decode()
    attrs = {"content-transfer-encoding": {"DataType": "String", "StringValue": "base64"}}
    raw = decode_message(sqs_message(payload, attrs), queue="q").records[0]
    assert raw.kind == "bytes" and raw.body == b"\xff\xfe\x00binary" and raw.text is None
    assert "content-transfer-encoding" not in raw.attributes
    not_b64 = decode_message(sqs_message("%%% not base64", attrs), queue="q").records[0]
    assert not_b64.kind == "text" and not_b64.text == "%%% not base64"
    surrogate = decode_message(sqs_message("bad \udcff char"), queue="q").records[0]
    assert surrogate.kind == "bytes"


def test_s3_events_one_record_each_with_url_decoded_keys():
    body = json.dumps({"Records": [s3_event("my+photo%3A1.jpg"), s3_event("a/b%2Bc.txt")]})
    first, second = decode_message(sqs_message(body), queue="q").records
    assert first.kind == "s3" and first.id == "m-1#0" and second.id == "m-1#1"
    assert first.meta["bucket"] == "photos" and first.meta["key"] == "my photo:1.jpg"
    assert second.meta["key"] == "a/b+c.txt" and first.meta["size"] == 42
    assert first.meta["event_name"] == "ObjectCreated:Put" and first.data["s3"]["bucket"]
    via_sns = decode_message(
        sqs_message(envelope(json.dumps({"Records": [s3_event("x%20y")]}))), queue="q"
    )
    (record,) = via_sns.records
    assert record.kind == "s3" and record.meta["key"] == "x y" and record.meta["topic_arn"]


def test_s3_test_events_are_skipped_directly_or_through_sns():
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})
    assert decode_message(sqs_message(test_event), queue="q").skip == "s3:TestEvent"
    through_sns = decode_message(sqs_message(envelope(test_event)), queue="q")
    assert through_sns.skip == "s3:TestEvent" and not through_sns.records


def test_lookalikes_are_plain_json_not_envelopes_or_s3():
    fake_envelope = json.dumps({"Type": "Notification", "Message": 5})
    assert decode_message(sqs_message(fake_envelope), queue="q").records[0].kind == "json"
    mixed = json.dumps({"Records": [s3_event("k"), {"eventSource": "aws:dynamodb"}]})
    assert decode_message(sqs_message(mixed), queue="q").records[0].kind == "json"
    fifo = decode_message(
        sqs_message("x", MessageGroupId="g", SequenceNumber="7"), queue="q.fifo"
    ).records[0]
    assert fifo.meta["group_id"] == "g" and fifo.meta["sequence_number"] == "7"
