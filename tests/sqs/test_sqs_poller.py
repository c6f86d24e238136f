"""The SQS poller, in process, against the real moto server: visibility, concurrency, failures,
FIFO, decoding end to end, duplicates, receive errors and stopping."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from daemon.workers import CATALOG
from tests.support import handlers
from tests.support.aws_front import AwsFront
from tests.support.messaging import Harness, Logs, queue_attributes, subscribe_queue, unique
from tests.support.observe import metric, wait_until
from tests.support.proxy import FaultProxy

BEHAVE = {"kind": "python", "entrypoint": "tests.support.handlers:behave"}


@pytest.fixture(autouse=True)
def _fresh_handlers() -> None:
    handlers.reset()


def make_queue(boto: Callable[[str], Any], visibility: int = 30, **attributes: str) -> str:
    name = unique("poll") + (".fifo" if attributes.get("FifoQueue") == "true" else "")
    attributes = {"VisibilityTimeout": str(visibility), **attributes}
    return str(boto("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def poller(url: str, **settings: Any) -> dict[str, Any]:
    return {"p": {"queue": url, "wait_time_seconds": 1, "handler": BEHAVE, **settings}}


def send(boto: Callable[[str], Any], url: str, *bodies: str, **extra: Any) -> None:
    sqs = boto("sqs")
    for i in range(0, len(bodies), 10):
        entries = [
            {"Id": str(n), "MessageBody": body, **extra}
            for n, body in enumerate(bodies[i : i + 10])
        ]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def bodies() -> list[str]:
    return [r.text or "" for r in handlers.CALLS]


async def test_heartbeat_keeps_a_long_handler_invisible_past_the_visibility_timeout(
    harness: Harness, boto
):
    url = make_queue(boto, visibility=2)
    send(boto, url, "sleep:5")
    await harness.start(harness.config(sqs=poller(url, max_in_flight=2)))
    await wait_until(lambda: len(handlers.CALLS) == 1, timeout=30)
    worker = harness.worker("sqs:p")
    await wait_until(lambda: worker.m.receipts.deleted.value == 1)
    assert worker.m.received.value == 1, "the message came back while its handler ran"
    assert worker.m.receipts.extended.value >= 2
    assert handlers.CALLS[0].meta["receive_count"] == 1
    assert queue_attributes(boto("sqs"), url)["ApproximateNumberOfMessages"] == 0


async def test_without_heartbeat_the_same_message_is_delivered_again(harness: Harness, boto):
    url = make_queue(boto, visibility=1)
    send(boto, url, "sleep:3")
    await harness.start(harness.config(sqs=poller(url, max_in_flight=2, heartbeat=False)))
    worker = harness.worker("sqs:p")
    await wait_until(lambda: worker.m.received.value >= 2, timeout=30)


async def test_in_flight_cap_holds_and_a_slow_message_blocks_only_itself(
    harness: Harness, boto, logs: Logs
):
    url = make_queue(boto, visibility=30)
    send(boto, url, "sleep:60")
    send(boto, url, *[f"fast-{i}" for i in range(24)])
    await harness.start(harness.config(sqs=poller(url, max_in_flight=4, batch_size=10)))
    worker = harness.worker("sqs:p")
    most_busy = most_held = 0

    most_gauge = 0.0

    def sampled() -> bool:
        nonlocal most_busy, most_held, most_gauge
        if worker.receipts is not None:
            most_busy = max(most_busy, worker.receipts.in_flight)
            most_held = max(most_held, len(worker.receipts.held))
        most_gauge = max(most_gauge, metric(harness.metrics, "awsd_sqs_inflight"))
        return len(handlers.CALLS) == 24

    await wait_until(sampled, timeout=30)
    assert sorted(bodies()) == sorted(f"fast-{i}" for i in range(24))
    assert handlers.STATE["running"] == 1, "the slow message is still being handled"
    assert handlers.STATE["max_running"] <= 4 and most_busy <= 4 and most_held <= 8
    # The metrics say the same: the in-flight gauge never passed the cap, shows the slow message
    # still in flight, and every finished handler was timed.
    assert most_gauge <= 4
    assert metric(harness.metrics, "awsd_sqs_inflight") == 1
    [timed] = [
        child.count
        for family in harness.metrics.families()
        if family.name == "awsd_sqs_handler_seconds"
        for _, child in family.series()
    ]
    assert timed >= 24
    await harness.stop(2.0)  # the slow handler is cancelled and its message released at once
    counts = queue_attributes(boto("sqs"), url)
    assert counts["ApproximateNumberOfMessagesNotVisible"] == 0
    assert counts["ApproximateNumberOfMessages"] == 1
    assert logs.matching("handlers cancelled at the shutdown deadline", handlers=1)


async def test_room_for_several_batches_puts_several_receives_in_flight(
    aws_front: AwsFront, harness: Harness, boto
):
    """Behind a long round trip, one receive at a time brings a batch per round trip whatever
    `max_in_flight` says: with room for three batches, three receives are in flight at once
    (and never more messages in flight than the cap)."""
    url = make_queue(boto)
    send(boto, url, *[f"m{i}" for i in range(90)])
    aws_front.delay(0.3, operation="ReceiveMessage")
    harness.endpoint = aws_front.url
    await harness.start(harness.config(sqs=poller(url, max_in_flight=30)))
    await wait_until(lambda: len(handlers.CALLS) == 90, timeout=30)
    assert aws_front.max_in_flight["sqs:ReceiveMessage"] == 3
    assert handlers.STATE["max_running"] <= 30


async def test_failures_reach_the_dead_letter_queue_after_max_receive_count(harness: Harness, boto):
    dlq = make_queue(boto)
    dlq_arn = boto("sqs").get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": 2}
    url = make_queue(boto, visibility=1, RedrivePolicy=json.dumps(redrive))
    send(boto, url, "fail: poison", "good")
    await harness.start(harness.config(sqs=poller(url, failure_backoff=0.2)))
    sqs = boto("sqs")
    await wait_until(
        lambda: queue_attributes(sqs, dlq)["ApproximateNumberOfMessages"] == 1, timeout=30
    )
    worker = harness.worker("sqs:p")
    assert worker.m.failed.value == 2, "handled exactly maxReceiveCount times, never spinning"
    assert bodies() == ["good"]
    moved = sqs.receive_message(QueueUrl=dlq)["Messages"][0]
    assert moved["Body"] == "fail: poison"


async def test_redrive_policy_leaves_a_failing_message_to_the_queue(
    aws_front: AwsFront, harness: Harness, boto, logs: Logs
):
    dlq = make_queue(boto)
    dlq_arn = boto("sqs").get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": 2}
    url = make_queue(boto, visibility=1, RedrivePolicy=json.dumps(redrive))
    send(boto, url, "fail: poison")
    harness.endpoint = aws_front.url
    await harness.start(harness.config(sqs=poller(url, on_failure="redrive", heartbeat=False)))
    sqs = boto("sqs")
    await wait_until(
        lambda: queue_attributes(sqs, dlq)["ApproximateNumberOfMessages"] == 1, timeout=30
    )
    assert harness.worker("sqs:p").m.failed.value == 2
    assert len(logs.matching("handler failed; message left to the redrive policy")) == 2
    # Neither a backoff nor a release: the message came back on its own visibility timeout.
    assert not aws_front.calls("ChangeMessageVisibilityBatch")
    assert not aws_front.calls("ChangeMessageVisibility")
    assert not aws_front.calls("DeleteMessageBatch")


async def test_handler_timeout_cancels_and_the_message_is_not_acked(
    harness: Harness, boto, logs: Logs
):
    url = make_queue(boto, visibility=30)
    send(boto, url, "sleep:30")
    settings = {"handler_timeout": 0.3, "failure_backoff": 60, "failure_backoff_max": 60}
    await harness.start(harness.config(sqs=poller(url, **settings)))
    worker = harness.worker("sqs:p")
    await wait_until(lambda: worker.m.failed.value == 1)
    assert handlers.STATE["running"] == 0 and not handlers.CALLS
    (failure,) = logs.matching("handler failed; message backed off")
    assert failure["error"] == "handler timed out after 0.3s" and failure["retry_in_s"] >= 30
    await wait_until(lambda: worker.m.receipts.released.value == 1)
    counts = queue_attributes(boto("sqs"), url)
    assert counts["ApproximateNumberOfMessagesNotVisible"] == 1 and worker.m.processed.value == 0


async def test_fifo_one_at_a_time_per_group_groups_in_parallel_order_kept_on_failure(
    harness: Harness, boto
):
    url = make_queue(boto, visibility=2, FifoQueue="true", ContentBasedDeduplication="true")
    sqs = boto("sqs")
    for group, items in {
        "a": ["sleep:1 a1", "a2", "a3"],
        "b": ["b1", "b2"],
        "c": ["fail-once c1", "c2"],
    }.items():
        for body in items:
            sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group)
    handlers.STATE["fail_until"]["fail-once c1"] = 1
    await harness.start(harness.config(sqs=poller(url, failure_backoff=0.1)))
    await wait_until(lambda: len(handlers.CALLS) == 7, timeout=30)
    seen = bodies()
    for group in (["sleep:1 a1", "a2", "a3"], ["b1", "b2"], ["fail-once c1", "c2"]):
        assert [b for b in seen if b in group] == group
    assert seen.index("b2") < seen.index("sleep:1 a1"), "group b waited for group a"
    assert handlers.CALLS[0].meta["group_id"] in ("b", "c")


async def test_a_retried_fifo_receive_reuses_its_receive_request_attempt_id(
    aws_front: AwsFront, harness: Harness, boto
):
    url = make_queue(boto, FifoQueue="true", ContentBasedDeduplication="true")
    boto("sqs").send_message(QueueUrl=url, MessageBody="once", MessageGroupId="g")
    aws_front.fail("ReceiveMessage", "InternalError", status=500, times=2)
    harness.endpoint = aws_front.url
    settings = {"receive_backoff": 0.05, "receive_backoff_max": 0.1}
    await harness.start(harness.config(sqs=poller(url, **settings)))
    await wait_until(lambda: bodies() == ["once"])
    await wait_until(lambda: len(aws_front.calls("ReceiveMessage")) >= 4)
    receives = aws_front.calls("ReceiveMessage")
    assert [c.error for c in receives[:3]] == ["InternalError", "InternalError", ""]
    ids = [c.request.get("ReceiveRequestAttemptId") for c in receives]
    assert ids[0] and ids[0] == ids[1] == ids[2], "a retried receive keeps its attempt id"
    assert all(ids[3:]) and ids[0] not in ids[3:], "the next receive gets a new one"


async def test_a_failed_delete_entry_is_retried_and_the_message_not_redelivered(
    aws_front: AwsFront, harness: Harness, boto, logs: Logs
):
    url = make_queue(boto, visibility=30)
    send(boto, url, "one", "two", "three")
    aws_front.fail_records(
        lambda entry: True, operation="DeleteMessageBatch", code="InternalError", times=1
    )
    harness.endpoint = aws_front.url
    await harness.start(harness.config(sqs=poller(url)))
    worker = harness.worker("sqs:p")
    await wait_until(lambda: worker.m.receipts.deleted.value == 3)
    deletes = aws_front.calls("DeleteMessageBatch")
    assert deletes[0].failed_records == len(deletes[0].request["Entries"]) > 0
    retried = {e["ReceiptHandle"] for e in deletes[0].request["Entries"]}
    later = {e["ReceiptHandle"] for c in deletes[1:] for e in c.request["Entries"]}
    assert retried <= later, "every failed entry was sent again"
    assert sorted(bodies()) == ["one", "three", "two"] and worker.m.received.value == 3
    assert worker.m.receipts.lost.value == 0
    counts = queue_attributes(boto("sqs"), url)
    assert (
        counts["ApproximateNumberOfMessages"]
        == counts["ApproximateNumberOfMessagesNotVisible"]
        == 0
    )


async def test_sns_envelope_raw_delivery_s3_and_bytes_decode_end_to_end(
    harness: Harness, boto, logs: Logs
):
    url = make_queue(boto)
    raw_url = make_queue(boto)
    sqs, sns = boto("sqs"), boto("sns")
    topic = sns.create_topic(Name=unique("fan"))["TopicArn"]
    subscribe_queue(boto, topic, url, raw=False)
    subscribe_queue(boto, topic, raw_url, raw=True)
    attributes = {"level": {"DataType": "String", "StringValue": "high"}}
    sns.publish(TopicArn=topic, Message='{"t": 1}', Subject="s", MessageAttributes=attributes)
    event = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}
    event["s3"] = {"bucket": {"name": "bk"}, "object": {"key": "a+b%21", "size": 3}}
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Records": [event]}))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Event": "s3:TestEvent"}))
    sqs.send_message(
        QueueUrl=url,
        MessageBody=base64.b64encode(b"\xff\x00").decode(),
        MessageAttributes={
            "content-transfer-encoding": {"DataType": "String", "StringValue": "base64"}
        },
    )
    sqs.send_message(QueueUrl=url, MessageBody="plain text")
    config = harness.config(
        sqs={
            "env": {"queue": url, "wait_time_seconds": 1, "handler": BEHAVE},
            "raw": {"queue": raw_url, "wait_time_seconds": 1, "handler": BEHAVE},
        }
    )
    await harness.start(config)
    await wait_until(lambda: len(handlers.CALLS) == 5, timeout=30)
    by_kind = {(r.meta["queue"], r.kind): r for r in handlers.CALLS}
    enveloped = by_kind[("env", "sns")]
    assert enveloped.data == {"t": 1} and enveloped.meta["subject"] == "s"
    assert enveloped.attributes == {"level": "high"} and enveloped.meta["topic_arn"] == topic
    raw = by_kind[("raw", "json")]
    assert raw.data == {"t": 1} and raw.attributes == {"level": "high"}
    assert by_kind[("env", "s3")].meta["key"] == "a b!"
    assert by_kind[("env", "bytes")].body == b"\xff\x00"
    assert by_kind[("env", "text")].text == "plain text"
    assert logs.matching("message skipped", reason="s3:TestEvent")
    await wait_until(lambda: queue_attributes(sqs, url)["ApproximateNumberOfMessages"] == 0)


async def test_a_second_copy_of_an_sns_notification_is_deleted_unhandled(
    harness: Harness, boto, logs: Logs
):
    url = make_queue(boto)
    body = json.dumps(
        {
            "Type": "Notification",
            "MessageId": unique("sns"),
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
            "Message": "once",
        }
    )
    send(boto, url, body)
    await harness.start(harness.config(sqs=poller(url)))
    await wait_until(lambda: len(handlers.CALLS) == 1)
    send(boto, url, body)  # SNS delivered it again (at-least-once)
    worker = harness.worker("sqs:p")
    await wait_until(lambda: worker.m.duplicates.value == 1)
    await wait_until(lambda: worker.m.receipts.deleted.value == 2)
    assert len(handlers.CALLS) == 1 and logs.matching("duplicate message dropped")


async def test_an_invalid_receipt_is_logged_as_may_be_redelivered_never_a_crash(
    harness: Harness, boto, logs: Logs
):
    url = make_queue(boto, visibility=30)
    send(boto, url, "sleep:1")
    await harness.start(harness.config(sqs=poller(url)))
    await wait_until(lambda: handlers.STATE["running"] == 1)
    boto("sqs").purge_queue(QueueUrl=url)  # the message is gone under the handler
    worker = harness.worker("sqs:p")
    await wait_until(lambda: worker.m.receipts.lost.value == 1)
    (lost,) = logs.matching("receipt handle no longer valid; the message may be redelivered")
    assert lost["during"] == "delete"
    send(boto, url, "after")
    await wait_until(lambda: "after" in bodies())
    assert harness.supervisor.runners["sqs:p"].restarts == 0


async def test_receive_errors_back_off_and_recover(
    fault_proxy: FaultProxy, harness: Harness, boto, logs: Logs
):
    # The proxy first: it stops after the harness.
    url = make_queue(boto)
    harness.endpoint = fault_proxy.url
    settings = {"receive_backoff": 0.2, "receive_backoff_max": 0.5}
    await harness.start(harness.config(sqs=poller(url, **settings)))
    worker = harness.worker("sqs:p")
    await wait_until(lambda: worker.state == "polling")
    first_receive = worker.last_receive
    fault_proxy.set_mode("refuse")
    await wait_until(lambda: worker.m.receive_errors.value >= 3)
    assert worker.state == "backing off after receive errors"
    assert worker.health()["last_error"]
    await asyncio.sleep(1.0)
    assert worker.m.receive_errors.value < 15, "receive errors must back off, not spin"
    send(boto, url, "after the outage")
    fault_proxy.set_mode("pass")
    await wait_until(lambda: bodies() == ["after the outage"], timeout=30)
    assert worker.last_receive is not None and worker.last_receive != first_receive
    assert worker.health()["last_receive_at"].endswith("Z")
    assert logs.matching("receive failed; backing off")


async def test_a_queue_that_does_not_exist_yet_is_waited_for(harness: Harness, boto):
    name = unique("later")
    settings = {"receive_backoff": 0.1, "receive_backoff_max": 0.3}
    await harness.start(harness.config(sqs=poller(name, **settings)))
    worker = harness.worker("sqs:p")
    await wait_until(lambda: worker.state == "waiting for the queue")
    url = boto("sqs").create_queue(QueueName=name)["QueueUrl"]
    send(boto, url, "finally")
    await wait_until(lambda: bodies() == ["finally"], timeout=30)


async def test_a_reload_restarts_only_the_queue_whose_section_changed(harness: Harness, boto):
    first, second = make_queue(boto), make_queue(boto)
    pollers = {
        "a": {"queue": first, "wait_time_seconds": 1},
        "b": {"queue": second, "wait_time_seconds": 1},
    }
    services = await harness.start(harness.config(sqs=pollers))
    pollers["b"] = {"queue": second, "wait_time_seconds": 1, "max_in_flight": 3}
    config = harness.config(sqs=pollers)
    loop = asyncio.get_running_loop()
    changes = await harness.supervisor.apply(
        CATALOG.specs(config), services, config.runtime, loop.time() + 5
    )
    assert changes.changed == ("sqs:b",) and changes.unchanged == ("sqs:a",)


async def test_a_long_poll_running_at_stop_is_let_finish_and_what_it_brings_is_released(
    harness: Harness, boto
):
    url = make_queue(boto, visibility=600)
    await harness.start(harness.config(sqs=poller(url, wait_time_seconds=10)))
    worker = harness.worker("sqs:p")
    await wait_until(lambda: worker.state == "polling")  # a 10 s long poll on an empty queue
    stopping = asyncio.create_task(harness.stop(15.0))
    token = harness.supervisor.runners["sqs:p"].stop_token
    await wait_until(lambda: token.stopping)  # stop requested; the poll is still waiting
    assert worker.state == "polling"
    send(boto, url, "arrived during the stop")
    await stopping
    # The poll was not cancelled (that could lose SQS's assignment): it returned the message,
    # which went straight back with visibility 0 instead of to the handler; nothing waits
    # out the 600 s visibility timeout.
    assert metric(harness.metrics, "awsd_sqs_received_total") == 1
    assert metric(harness.metrics, "awsd_sqs_released_total") == 1
    assert handlers.CALLS == []
    counts = queue_attributes(boto("sqs"), url)
    assert counts["ApproximateNumberOfMessages"] == 1
    assert counts["ApproximateNumberOfMessagesNotVisible"] == 0
