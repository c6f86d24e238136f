"""`awsd iam-policy` covers every call the messaging workers make, scoped to their resources."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.core.iam import action_for, allows
from daemon.workers import CATALOG
from tests.support import handlers
from tests.support.messaging import Harness, unique
from tests.support.observe import wait_until

ACCOUNT = "123456789012"


async def test_every_call_of_a_poller_forwarding_and_a_publisher_is_allowed(
    harness: Harness, tmp_path: Any, boto
):
    handlers.reset()
    sqs, sns = boto("sqs"), boto("sns")
    inbox = sqs.create_queue(QueueName=unique("in"))["QueueUrl"]
    outbox_queue = sqs.create_queue(QueueName=unique("out"))["QueueUrl"]
    topic = sns.create_topic(Name=unique("t"))["TopicArn"]
    reading = tmp_path / "value"
    reading.write_text("1")
    forward = {"kind": "forward", "sns": topic}
    config = harness.config(
        sqs={
            "a": {"queue": inbox, "wait_time_seconds": 1, "handler": forward},
            "b": {
                "queue": inbox,
                "wait_time_seconds": 1,
                "handler": {"kind": "forward", "sqs": outbox_queue},
            },
        },
        sns={"topic": topic, "readings": {"r": {"file": str(reading), "interval": 0.2}}},
    )
    sqs.send_message_batch(
        QueueUrl=inbox, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(6)]
    )
    services = await harness.start(config)
    await wait_until(
        lambda: (
            harness.worker("sqs:a").m.processed.value + harness.worker("sqs:b").m.processed.value
            == 6
        )
    )
    await wait_until(lambda: services.outbox.count == 0)
    await harness.stop(3.0)  # the calls made while stopping are checked too
    document = CATALOG.policy(config, account=ACCOUNT, region="us-east-1")
    calls = harness.metrics.counter("awsd_aws_api_calls_total", "", ("service", "operation"))
    made = {(labels["service"], labels["operation"]) for labels, c in calls.series() if c.value}
    assert ("sns", "PublishBatch") in made and ("sqs", "ReceiveMessage") in made
    for service, operation in made:
        action = action_for(service, operation)
        assert action is None or allows(document, action), f"{service}:{operation} not allowed"
    assert not allows(document, "sqs:ReceiveMessage", f"arn:aws:sqs:us-east-1:{ACCOUNT}:other")


def test_check_config_names_what_messaging_sections_get_wrong(offline_configs: Any):
    from daemon.config import ConfigError
    from daemon.workers import load_config

    # The field errors come first (then the cross checks do not run), so twice: with and
    # without `c`.
    sqs = {
        "a": {"queue": "orders", "handler": {"kind": "forward", "sns": "alerts"}},
        "b": {
            "queue": "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
            "handler": {"kind": "python", "entrypoint": "no_such_module:f"},
        },
    }
    readings = {"readings": {"r": {"file": "/dev/null"}}}
    bad_batch = {"c": {"queue": "arn:aws:sqs:eu-west-1:123456789012:q", "batch_size": 11}}
    path = offline_configs.write({"sqs": {**sqs, **bad_batch}, "sns": readings}, health=False)
    with pytest.raises(ConfigError) as failure:
        load_config(path)
    text = failure.value.render()
    assert "sqs.c.batch_size: Input should be less than or equal to 10" in text
    path = offline_configs.write({"sqs": sqs, "sns": readings}, health=False)
    with pytest.raises(ConfigError) as failure:
        load_config(path)
    text = failure.value.render()
    assert "sqs.a.queue: names queue 'orders', which is not declared" in text
    assert "sqs.a.handler.sns: names topic 'alerts', which is not declared" in text
    assert "sqs.b.handler.entrypoint: cannot import 'no_such_module'" in text
    assert "sns.readings.r.topic: no topic: set it here, or a default in sns.topic" in text
