"""Messaging with real `awsd` processes: fan-out end to end, `awsd publish`, SIGTERM and SIGKILL
with messages in flight, an endpoint outage while publishing, the outbox across restarts."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ConfigFactory
from tests.support.messaging import queue_attributes, receive_bodies, subscribe_queue, unique
from tests.support.proc import Awsd, awsd_cli
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.slow

LOGGED = {"kind": "python", "entrypoint": "tests.support.handlers:logged"}


def cli(config: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return awsd_cli("publish", "--config", str(config), *args, stdin=stdin)


def topic_and_queues(boto: Callable[[str], Any], **raw: bool) -> tuple[str, dict[str, str]]:
    """A topic (its ARN: undeclared topics are named by ARN in a config) and one queue per
    keyword (raw delivery or not) subscribed to it."""
    sns, sqs = boto("sns"), boto("sqs")
    name = unique("topic")
    arn = sns.create_topic(Name=name)["TopicArn"]
    urls = {}
    for key, is_raw in raw.items():
        url = sqs.create_queue(QueueName=unique(key), Attributes={"VisibilityTimeout": "30"})[
            "QueueUrl"
        ]
        subscribe_queue(boto, arn, url, raw=is_raw)
        urls[key] = url
    return arn, urls


def handled(proc: Awsd, worker: str | None = None) -> list[dict[str, Any]]:
    return [
        e for e in proc.logs.matching("test handled") if worker is None or e.get("worker") == worker
    ]


def wait_status(proc: Awsd, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        status, body = proc.http("/status")
        if status == 200 and predicate(body):
            return body
        assert time.monotonic() < deadline, f"status never matched: {json.dumps(body)[:2000]}"
        time.sleep(0.1)


def test_sns_to_sqs_fan_out_end_to_end_with_awsd_publish(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto, tmp_path: Path
):
    topic, urls = topic_and_queues(boto, raw=True, enveloped=False)
    reading = tmp_path / "temp"
    reading.write_text("21500")
    path = configs.write(
        {
            "sns": {
                "topic": topic,
                "readings": {"temp": {"file": str(reading), "interval": 0.5, "scale": 0.001}},
            },
            "sqs": {
                "raw": {"queue": urls["raw"], "wait_time_seconds": 1, "handler": LOGGED},
                "env": {"queue": urls["enveloped"], "wait_time_seconds": 1, "handler": LOGGED},
            },
        }
    )
    proc = awsd(path)
    proc.wait_ready()
    result = cli(path, "--attr", "k=v", "--wait", "20", "hello fan-out")
    assert result.returncode == 0, result.stderr
    assert "accepted: outbox id" in result.stdout and "delivered" in result.stdout
    proc.logs.wait_for("test handled", body="hello fan-out", kind="text", worker="sqs:raw")
    proc.logs.wait_for("test handled", body="hello fan-out", kind="sns", worker="sqs:env")
    for worker in ("sqs:raw", "sqs:env"):
        event = proc.logs.wait_for(
            "test handled", worker=worker, where=lambda e: '"name":"temp"' in e["body"]
        )
        assert json.loads(event["body"])["value"] == 21.5
    batch = {"messages": [{"message": f"batch-{i}"} for i in range(3)]}
    status, answer = proc.publish(batch)
    assert status == 200 and len(answer["ids"]) == 3
    for i in range(3):
        proc.logs.wait_for("test handled", body=f"batch-{i}", worker="sqs:env")
    assert proc.stop() == 0


def test_awsd_publish_refuses_bad_input_with_clear_errors(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto
):
    topic, _ = topic_and_queues(boto)
    path = configs.write({"sns": {"topic": topic}})
    not_running = cli(path, "hello")
    assert not_running.returncode == 69
    assert "no ingest token" in not_running.stderr and "is it running?" in not_running.stderr
    proc = awsd(path)
    proc.wait_ready()
    for args, stdin, reason in [
        (("-",), b"x" * 300_000, "SNS takes at most 262144"),
        (("-",), b"\xff\xfe not text", "stdin is not UTF-8"),
        (("--attr", "AWS.reserved=1", "m"), None, "name 'AWS.reserved' is invalid"),
        (("--phone", "0123 456", "m"), None, "not an E.164 phone number"),
        (("--phone", "+15555550100", "x" * 200), None, "one SMS holds 140 bytes"),
        (("--topic", "t.fifo", "m"), None, "needs a group_id"),
        (("--subject", "line\nbreak", "m"), None, "without line breaks"),
        (("",), None, "the message is empty"),
    ]:
        result = cli(path, *args, stdin=stdin)
        assert result.returncode == 65, (args, result.stderr)
        assert reason in result.stderr and "Traceback" not in result.stderr
    status, answer = proc.http(
        "/publish",
        method="POST",
        body=b"{not json",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {proc.token()}"},
    )
    assert status == 400 and answer["error"] == "the request body is not JSON"
    assert cli(path, "-", stdin=b"from stdin").returncode == 0
    proc.stop()
    no_publisher = configs.write({}, name="plain.toml")
    result = cli(no_publisher, "m")
    assert result.returncode == 78 and "no [sns] section" in result.stderr


def test_sigterm_with_messages_in_flight_releases_them_and_loses_nothing(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto
):
    sqs = boto("sqs")
    url = sqs.create_queue(QueueName=unique("term"), Attributes={"VisibilityTimeout": "60"})[
        "QueueUrl"
    ]
    bodies = [f"sleep:60 n={i}" for i in range(6)] + [f"fast n={i}" for i in range(6, 10)]
    entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
    sqs.send_message_batch(QueueUrl=url, Entries=entries)
    path = configs.write(
        {
            "runtime": {"shutdown_timeout": 6.0},
            "sqs": {"q": {"queue": url, "wait_time_seconds": 1, "handler": LOGGED}},
        }
    )
    proc = awsd(path)
    proc.wait_ready()
    proc.logs.wait_for("test handled", count=4)
    wait_status(proc, lambda s: s["workers"]["sqs:q"]["in_flight"] == 6)
    proc.signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    counts = queue_attributes(sqs, url)
    assert counts["ApproximateNumberOfMessagesNotVisible"] == 0
    assert counts["ApproximateNumberOfMessages"] == 6
    done = {e["body"] for e in handled(proc)}
    left = set(receive_bodies(boto, url, 6))
    assert done | left == set(bodies) and not done & left


def test_sigkill_mid_batch_then_restart_processes_every_message_at_least_once(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto
):
    sqs = boto("sqs")
    url = sqs.create_queue(QueueName=unique("kill"), Attributes={"VisibilityTimeout": "2"})[
        "QueueUrl"
    ]
    expected = {f"sleep:0.2 n={i}" for i in range(40)}
    for i in range(0, 40, 10):
        entries = [{"Id": str(n), "MessageBody": f"sleep:0.2 n={n}"} for n in range(i, i + 10)]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    path = configs.write({"sqs": {"q": {"queue": url, "wait_time_seconds": 1, "handler": LOGGED}}})
    first = awsd(path)
    first.logs.wait_for("test handled", count=10)
    first.signal(signal.SIGKILL)
    first.wait(10)
    before = {e["body"] for e in handled(first)}
    assert before < expected
    second = awsd(path)
    second.logs.wait_for(
        "test handled",
        timeout=60,
        where=lambda _: before | {e["body"] for e in handled(second)} >= expected,
    )
    # What the first run handled but could not delete comes back after its visibility timeout
    # and is handled again (at least once); then the queue is empty.
    deadline = time.monotonic() + 30
    while any(queue_attributes(sqs, url).values()):
        assert time.monotonic() < deadline, queue_attributes(sqs, url)
        time.sleep(0.2)
    assert second.stop() == 0


def test_endpoint_down_for_10s_while_publishing_loses_nothing(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto, fault_proxy: FaultProxy, tmp_path: Path
):
    topic, urls = topic_and_queues(boto, q=True)
    reading = tmp_path / "level"
    reading.write_text("7")
    path = configs.write(
        {
            "aws": {"endpoint_url": fault_proxy.url, "read_timeout": 2.0},
            "outbox": {"retry_initial": 0.2, "retry_max": 1.0},
            "sns": {"topic": topic, "readings": {"level": {"file": str(reading), "interval": 0.5}}},
        }
    )
    proc = awsd(path)
    proc.wait_ready()
    fault_proxy.set_mode("refuse")
    outage_ends = time.monotonic() + 10.0
    sent = []
    while time.monotonic() < outage_ends:
        status, _ = proc.publish({"message": f"during-{len(sent)}"})
        assert status == 200
        sent.append(f"during-{len(sent)}")
        time.sleep(0.5)
    proc.logs.wait_for("outbox delivery failed; retrying later")
    fault_proxy.set_mode("pass")
    final = wait_status(
        proc, lambda s: s["workers"]["outbox"]["outbox"]["waiting"] == 0, timeout=60
    )
    readings = final["workers"]["sns"]["readings"]["level"]["published"]
    assert proc.stop() == 0
    bodies = receive_bodies(boto, urls["q"], len(sent) + readings)
    assert sorted(b for b in bodies if b.startswith("during-")) == sorted(sent)
    assert len([b for b in bodies if '"name":"level"' in b]) >= readings


def test_the_sns_outbox_survives_a_restart(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto, fault_proxy: FaultProxy
):
    topic, urls = topic_and_queues(boto, q=True)
    path = configs.write(
        {
            "aws": {"endpoint_url": fault_proxy.url, "read_timeout": 2.0},
            "outbox": {"retry_initial": 0.2, "retry_max": 0.5},
            "sns": {"topic": topic},
        }
    )
    fault_proxy.set_mode("refuse")
    first = awsd(path)
    first.wait_ready()
    for i in range(5):
        assert cli(path, f"kept-{i}").returncode == 0
    assert first.stop() == 0
    fault_proxy.set_mode("pass")
    second = awsd(path)
    second.logs.wait_for("outbox has messages from before; delivering them first", waiting=5)
    wait_status(second, lambda s: s["workers"]["outbox"]["outbox"]["waiting"] == 0)
    assert second.stop() == 0
    assert sorted(receive_bodies(boto, urls["q"], 5)) == [f"kept-{i}" for i in range(5)]


def test_awsd_publish_to_a_kinesis_stream(configs: ConfigFactory, awsd: Callable[..., Awsd], boto):
    kinesis = boto("kinesis")
    name = unique("stream")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    path = configs.write({"sns": {}, "ingest": {"allow": [arn]}})
    proc = awsd(path)
    proc.wait_ready()
    result = cli(path, "--stream", arn, "--partition-key", "pi-7", "--wait", "20", '{"t": 21.5}')
    assert result.returncode == 0, result.stderr
    assert f"kinesis:{arn}" in result.stdout
    refused = cli(path, "--stream", arn, "--subject", "nope", "x")
    assert refused.returncode == 65 and "SNS fields, not for a Kinesis record" in refused.stderr
    assert cli(path, "--partition-key", "k", "x").returncode == 65
    shard = kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert [(r["Data"], r["PartitionKey"]) for r in records] == [(b'{"t": 21.5}', "pi-7")]
    assert proc.stop() == 0
