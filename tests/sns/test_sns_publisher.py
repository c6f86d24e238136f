"""The SNS publisher, the SNS and SMS senders and the publish requests, in process, against the
real moto server (delivery through the real outbox worker)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.outbox import InvalidMessage, Message, Retry, Sent
from daemon.outbox.senders.sms import fit_sms, sms_size
from daemon.outbox.senders.sns import batch_outcomes
from daemon.sns.publisher import next_tick, parse_value
from daemon.sns.publishing import PublishRequest, request_from_json
from tests.support.messaging import Harness, Logs, receive_messages, subscribe_queue, unique
from tests.support.observe import wait_until


def topic_with_queue(
    boto: Callable[[str], Any], *, raw: bool = True, fifo: bool = False
) -> tuple[str, str, str]:
    """A topic (name, arn) with a queue subscribed to it; returns (topic name, arn, queue url)."""
    sns, sqs = boto("sns"), boto("sqs")
    name = unique("topic") + (".fifo" if fifo else "")
    attributes = {"FifoTopic": "true"} if fifo else {}
    arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
    queue_attributes = {"FifoQueue": "true"} if fifo else {}
    url = sqs.create_queue(
        QueueName=unique("sub") + (".fifo" if fifo else ""), Attributes=queue_attributes
    )["QueueUrl"]
    subscribe_queue(boto, arn, url, raw=raw)
    return name, arn, url


# --- the SNS sender -------------------------------------------------------------------------------


async def test_topics_by_name_and_arn_get_batches_with_subjects_and_attributes(
    harness: Harness, boto
):
    name, arn, url = topic_with_queue(boto, raw=False)
    services = await harness.start(harness.config(sns={"topic": name}))
    outbox = services.outbox
    messages = [
        Message("sns", name, {"message": f"n{i}", "attributes": {"i": i, "k": "v"}})
        for i in range(15)
    ]
    messages.append(Message("sns", arn, {"message": "by arn", "subject": "Hello there"}))
    await outbox.put_many(messages)
    await wait_until(lambda: outbox.count == 0)
    got = [json.loads(m["Body"]) for m in receive_messages(boto, url, 16)]
    assert sorted(g["Message"] for g in got) == sorted([f"n{i}" for i in range(15)] + ["by arn"])
    by_arn = next(g for g in got if g["Message"] == "by arn")
    assert by_arn["Subject"] == "Hello there" and by_arn["TopicArn"] == arn
    numbered = next(g for g in got if g["Message"] == "n3")
    assert numbered["MessageAttributes"]["i"] == {"Type": "Number", "Value": "3"}
    calls = harness.metrics.counter(
        "awsd_aws_api_calls_total", "", ("service", "operation")
    ).labels(service="sns", operation="PublishBatch")
    assert calls.value <= 3, "16 messages go in batches of at most 10"


async def test_a_missing_topic_is_never_created_and_is_retried_until_it_exists(
    harness: Harness, boto
):
    name = unique("later")
    services = await harness.start(harness.config(sns={"topic": name}))
    await services.outbox.put(Message("sns", name, {"message": "early"}))
    await wait_until(lambda: any(t.failures >= 1 for t in services.outbox._targets.values()))
    topics = [t["TopicArn"] for t in boto("sns").list_topics()["Topics"]]
    assert not any(t.endswith(f":{name}") for t in topics)
    url = boto("sqs").create_queue(QueueName=unique("sub"))["QueueUrl"]
    arn = boto("sns").create_topic(Name=name)["TopicArn"]
    subscribe_queue(boto, arn, url, raw=True)
    await wait_until(lambda: services.outbox.count == 0)
    assert [m["Body"] for m in receive_messages(boto, url, 1)] == ["early"]


async def test_fifo_topics_need_a_group_and_deduplicate_by_content(harness: Harness, boto):
    name, _, url = topic_with_queue(boto, fifo=True)
    services = await harness.start(harness.config(sns={"topic": name}))
    with pytest.raises(InvalidMessage, match="FIFO: the message needs a group_id"):
        await services.outbox.put(Message("sns", name, {"message": "x"}))
    same = {"message": "same content", "group_id": "g1"}
    await services.outbox.put_many(
        [
            Message("sns", name, same),
            Message("sns", name, same),
            Message("sns", name, {"message": "other", "group_id": "g1"}),
        ]
    )
    await wait_until(lambda: services.outbox.count == 0)
    got = receive_messages(boto, url, 3, tries=3)
    assert [m["Body"] for m in got] == ["same content", "other"]


def test_per_entry_failures_are_retried_alone_unless_the_entry_is_at_fault():
    outcomes = batch_outcomes(
        {
            "Successful": [{"Id": "1", "MessageId": "a"}],
            "Failed": [
                {"Id": "2", "Code": "InternalError", "SenderFault": False, "Message": "x"},
                {"Id": "3", "Code": "Throttling", "SenderFault": True, "Message": "slow down"},
                {"Id": "4", "Code": "InvalidParameter", "SenderFault": True, "Message": "bad"},
            ],
        }
    )
    assert outcomes[0] == Sent(1, "a")
    assert isinstance(outcomes[1], Retry) and isinstance(outcomes[2], Retry)
    assert outcomes[2].throttled
    assert type(outcomes[3]).__name__ == "Reject" and "bad" in outcomes[3].error


@pytest.mark.parametrize(
    ("target", "body", "reason"),
    [
        ("t", {"message": ""}, "non-empty string 'message'"),
        ("t", {"message": "x" * (256 * 1024 + 1)}, "limit is 262144"),
        ("t", {"message": "x", "attributes": {str(i): "v" for i in range(11)}}, "at most 10"),
        ("t", {"message": "x", "attributes": {"AWS.x": "v"}}, "name 'AWS.x' is invalid"),
        ("t", {"message": "x", "attributes": {"a": ""}}, "empty value"),
        ("t", {"message": "x", "subject": "s" * 100}, "under 100"),
        ("t", {"message": "x", "subject": "two\nlines"}, "without line breaks"),
        ("bad name!", {"message": "x"}, "is not a topic name"),
        ("arn:aws:sqs:us-east-1:123456789012:q", {"message": "x"}, "not an SNS topic ARN"),
    ],
)
async def test_invalid_sns_messages_fail_at_put_with_the_reason(
    harness: Harness, target: str, body: dict, reason: str
):
    services = await harness.start(harness.config())
    with pytest.raises(InvalidMessage, match=reason.replace("(", r"\(")):
        await services.outbox.put(Message("sns", target, body))


# --- SMS ------------------------------------------------------------------------------------------


async def test_sms_to_an_e164_number_is_delivered_and_bad_ones_refused(harness: Harness):
    services = await harness.start(harness.config(sns={}))
    ok = await services.outbox.put(
        Message(
            "sms",
            "+15555550123",
            {"message": "site down", "sms_type": "Transactional", "sender_id": "awsd"},
        )
    )
    await wait_until(lambda: services.outbox.count == 0)
    assert (await services.outbox.status(ok)).fate == "delivered"
    for phone, body, reason in [
        ("07700 900123", {"message": "x"}, "not an E.164 phone number"),
        ("+15555550123", {"message": "x" * 161}, "161 characters"),
        ("+15555550123", {"message": "é" * 50 + "😀" * 25}, "as UCS-2"),
        ("+15555550123", {"message": "x", "sms_type": "Urgent"}, "Transactional or Promotional"),
        ("+15555550123", {"message": "x", "sender_id": "too long sender"}, "sender_id"),
    ]:
        with pytest.raises(InvalidMessage, match=reason):
            await services.outbox.put(Message("sms", phone, body))


def test_sms_sizes_follow_gsm7_and_ucs2_and_fit_sms_cuts_to_one_part():
    assert sms_size("a" * 160) == (140, "GSM-7")
    assert sms_size("{}") == (4, "GSM-7")  # extension characters take two septets
    assert sms_size("ä" * 70) == (62, "GSM-7")
    assert sms_size("ś" * 70) == (140, "UCS-2")
    assert fit_sms("short") == "short"
    cut = fit_sms("alert: " + "x" * 300)
    assert cut.endswith("...") and sms_size(cut)[0] <= 140 and len(cut) == 160


# --- publish requests -----------------------------------------------------------------------------


async def test_publish_requests_on_the_bus_reach_the_topic_and_bad_ones_are_logged(
    harness: Harness, boto, logs: Logs
):
    name, _, url = topic_with_queue(boto)
    services = await harness.start(harness.config(sns={"topic": name}))
    await asyncio.sleep(0.05)  # let the publisher subscribe
    services.events.publish(PublishRequest(source="probes", message="to the default topic"))
    services.events.publish(PublishRequest(source="probes", message="sms", phone="+15555550100"))
    services.events.publish(PublishRequest(source="probes", message="x", topic="bad name!"))
    await wait_until(lambda: harness.worker("sns").events_refused == 1)
    await wait_until(lambda: harness.worker("sns").events_published == 2)
    await wait_until(lambda: services.outbox.count == 0)
    assert [m["Body"] for m in receive_messages(boto, url, 1)] == ["to the default topic"]
    (refused,) = logs.matching("publish request refused")
    assert refused["requested_by"] == "probes" and "not a topic name" in refused["error"]


async def test_events_taken_from_the_bus_are_in_the_outbox_when_the_publisher_stops(
    harness: Harness,
):
    services = await harness.start(harness.config(sns={"topic": "t"}))
    await asyncio.sleep(0.05)
    for i in range(200):
        services.events.publish(PublishRequest(source="test", message=f"m{i}"))
    await harness.supervisor.stop_all(asyncio.get_running_loop().time() + 5)
    assert services.outbox.count == 200


def test_publish_request_payloads_are_checked():
    request = request_from_json(
        {"message": "m", "topic": "t", "attributes": {"a": "b", "n": 2}}, source="ingest"
    )
    message = request.to_message()
    assert (message.kind, message.target) == ("sns", "t")
    assert message.body == {"message": "m", "attributes": {"a": "b", "n": 2}}
    sms = request_from_json({"message": "m", "phone": "+4412"}, source="x").to_message()
    assert (sms.kind, sms.body["sms_type"]) == ("sms", "Transactional")
    for payload, reason in [
        ([], "JSON object"),
        ({"message": ""}, "non-empty string"),
        ({"message": "m", "colour": "red"}, "unknown field"),
        ({"message": "m", "topic": "t", "phone": "+1"}, "give one of"),
        ({"message": "m", "stream": "s", "subject": "x"}, "SNS fields"),
        ({"message": "m", "partition_key": "k"}, "goes with .stream."),
        ({"message": "m", "attributes": {"a": True}}, "string or number"),
        ({"message": "m", "sms_type": "Loud"}, "Transactional or Promotional"),
    ]:
        with pytest.raises(ValueError, match=reason):
            request_from_json(payload, source="x")
    with pytest.raises(InvalidMessage, match="no topic"):
        PublishRequest(message="m").to_message(None)


# --- readings -------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_file_and_command_readings_are_published_as_json_with_host_and_time(
    harness: Harness, boto, tmp_path: Path, logs: Logs
):
    name, _, url = topic_with_queue(boto)
    temp = tmp_path / "temp"
    temp.write_text("48312\n")
    readings = {
        "cpu": {"file": str(temp), "interval": 0.2, "scale": 0.001, "unit": "C"},
        "cmd": {"command": [sys.executable, "-c", "print('{\"ok\": 1}')"], "interval": 0.3},
        "gone": {"file": str(tmp_path / "missing"), "interval": 0.1},
    }
    await harness.start(harness.config(sns={"topic": name, "host": "pi-1", "readings": readings}))
    publisher = harness.worker("sns")
    await wait_until(lambda: publisher.readings["cpu"].published >= 3)
    await wait_until(lambda: publisher.readings["cmd"].published >= 1)
    await wait_until(lambda: harness.outbox is not None and harness.outbox.count == 0)
    got = [json.loads(m["Body"]) for m in receive_messages(boto, url, 4)]
    cpu = next(g for g in got if g["name"] == "cpu")
    assert cpu["value"] == 48.312 and cpu["unit"] == "C" and cpu["host"] == "pi-1"
    assert cpu["env"] == "test" and cpu["time"].endswith("Z")
    assert next(g for g in got if g["name"] == "cmd")["value"] == {"ok": 1}
    await wait_until(lambda: publisher.readings["gone"].last_error is not None)
    await asyncio.sleep(0.3)
    assert len(logs.matching("reading failed", reading="gone")) == 1, "logged once, not per tick"
    (tmp_path / "missing").write_text("7")
    await wait_until(lambda: publisher.readings["gone"].published >= 1)
    assert logs.matching("reading recovered", reading="gone")


async def test_a_reading_can_go_to_a_kinesis_stream_keyed_by_its_name(
    harness: Harness, boto, tmp_path: Path
):
    kinesis = boto("kinesis")
    stream = f"readings-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    temp = tmp_path / "temp"
    temp.write_text("21500")
    readings = {"hall": {"file": str(temp), "interval": 0.2, "scale": 0.001, "stream": arn}}
    await harness.start(harness.config(sns={"readings": readings}))
    publisher = harness.worker("sns")
    await wait_until(lambda: publisher.readings["hall"].published >= 2)
    await wait_until(lambda: harness.outbox is not None and harness.outbox.count == 0)
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert len(records) >= 2 and {r["PartitionKey"] for r in records} == {"hall"}
    assert json.loads(records[0]["Data"])["value"] == 21.5


@pytest.mark.slow
async def test_a_reading_slower_than_its_interval_skips_ticks_instead_of_bursting(
    harness: Harness, boto
):
    name, _, _ = topic_with_queue(boto)
    slow = [sys.executable, "-c", "import time; time.sleep(0.45); print(1)"]
    readings = {"slow": {"command": slow, "interval": 0.2, "timeout": 5}}
    await harness.start(harness.config(sns={"topic": name, "readings": readings}))
    state = harness.worker("sns").readings["slow"]
    await wait_until(lambda: state.published >= 2)
    assert state.missed_ticks >= 2


def test_next_tick_is_start_to_start_and_never_catches_up():
    assert next_tick(10.0, 5.0, 12.0) == (15.0, 0)
    assert next_tick(10.0, 5.0, 15.0) == (20.0, 1)  # the tick at 15 passed during the reading
    assert next_tick(10.0, 5.0, 31.0) == (35.0, 4)
    assert parse_value(" 42 ", None) == 42 and parse_value("48312", 0.001) == 48.312
    assert parse_value("temp=48.3'C", None) == "temp=48.3'C"
    assert parse_value("nan", None) == "nan" and parse_value("[1, 2]", None) == [1, 2]


async def test_drift_events_are_published_as_text_to_their_topic(harness: Harness, boto):
    from daemon.core.events import ResourceDrifted

    _, arn, url = topic_with_queue(boto, raw=False)
    services = await harness.start(harness.config(sns={"notify": {"ResourceDrifted": arn}}))
    await asyncio.sleep(0.05)
    drift = ResourceDrifted(
        source="reconciler",
        env="test",
        resource="queue.readings",
        physical="test-readings",
        arn="arn:aws:sqs:us-east-1:123456789012:test-readings",
        action="update",
        changes=(("VisibilityTimeout", "60", "30"),),
        fixed=True,
    )
    services.events.publish(drift)
    await wait_until(lambda: harness.worker("sns").events_published == 1)
    await wait_until(lambda: services.outbox.count == 0)
    (got,) = [json.loads(m["Body"]) for m in receive_messages(boto, url, 1)]
    assert got["Message"] == drift.text() and "drift on queue.readings" in got["Message"]
    assert got["MessageAttributes"]["awsd_event"]["Value"] == "ResourceDrifted"


def test_notify_names_only_events_with_a_text_form(offline_configs: Any):
    from daemon.config import ConfigError
    from daemon.workers import load_config

    path = offline_configs.write(
        {
            "sns": {
                "notify": {"ResourceDrifted": "arn:aws:sns:us-east-1:123456789012:a", "Nope": "x"}
            }
        },
        health=False,
    )
    with pytest.raises(ConfigError) as failure:
        load_config(path)
    rendered = failure.value.render()
    assert "sns.notify.Nope: no such event; known: ResourceContested, ResourceDrifted" in rendered
    assert "sns.notify.Nope: names topic 'x', which is not declared" in rendered


async def test_declared_logical_names_become_their_aws_names(harness: Harness):
    config = harness.config(
        resources={
            "mode": "off",  # names only: no reconciler worker in this test
            "topics": {"news": {}, "named": {"name": "exact-{region}"}},
            "queues": {"q": {}},
        },
        sns={"topic": "news"},
    )
    services = await harness.start(config)
    targets = services.targets
    assert await targets.aws_name("topics", "news") == "test-news"
    assert await targets.aws_name("topics", "named") == "exact-us-east-1"
    assert await targets.aws_name("queues", "q") == "test-q"
    assert await targets.aws_name("topics", "not-declared") == "not-declared"
    arn = "arn:aws:sns:us-east-1:123456789012:x"
    assert await targets.aws_name("topics", arn) == arn
    await asyncio.sleep(0.05)
    services.events.publish(PublishRequest(source="t", message="m"))
    await wait_until(lambda: harness.worker("sns").events_published == 1)
    assert ("sns", "test-news") in services.outbox._targets
