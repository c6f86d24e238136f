"""Probe alerts end to end: a failing endpoint's alert reaches an SNS topic on the moto server and
an SQS queue subscribed to it, and is marked delivered only once SNS accepted it."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from daemon.config.models import Config
from daemon.core.local_aws import free_port
from daemon.outbox.senders import SENDERS
from daemon.probes.engine import ProbesWorker
from tests.probes.test_probes_worker import Running
from tests.support.messaging import receive_bodies, subscribe_queue
from tests.support.observe import wait_until
from tests.support.outbox import make_outbox

pytestmark = pytest.mark.skipif(
    "sns" not in SENDERS, reason="the SNS sender (outbox kind 'sns') is not on this branch yet"
)


async def test_an_alert_reaches_the_topic_and_its_subscribed_queue(boto, delivery, tmp_path):
    name = f"alerts-{uuid.uuid4().hex[:8]}"
    sns, sqs = boto("sns"), boto("sqs")
    topic = sns.create_topic(Name=name)["TopicArn"]
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    subscribe_queue(boto, topic, url, raw=False)

    outbox = make_outbox()
    running = await delivery(outbox)
    config = Config.model_validate(
        {
            "env": "test",
            "runtime": {"state_dir": str(tmp_path / "state")},
            "probes": {
                "storm": {"group_window": 0},
                "endpoints": {
                    "down": {"url": f"http://127.0.0.1:{free_port()}/", "interval": 0.2,
                             "timeout": 0.1, "alert": {"topic": name, "failure_threshold": 2}},
                },
            },
        }
    )  # fmt: skip
    worker = ProbesWorker(config, running.services)
    async with Running(worker, close_outbox=False):
        bodies = await asyncio.to_thread(receive_bodies, boto, name, 1)
        state = worker.states["down"]
        await wait_until(lambda: state.last_notification.get("status") == "delivered")
    envelope = json.loads(bodies[0])
    alert = json.loads(envelope["Message"])
    assert alert["event"] == "open" and alert["alerts"][0]["endpoint"] == "down"
    assert alert["alerts"][0]["reason"] == "refused"
    assert envelope["Subject"] == "[awsd test] DOWN down: refused"
