"""The daemon runs with credentials that hold only `awsd iam-policy`'s output, on a moto server
that enforces IAM (tests/support/iam.py): everything works, and one action taken away gives a
clear AccessDenied that is retried without crashing anything.

The lead extends this to every worker; the harness (`IamMoto`, `moto_view`, `without`) is
shared.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from daemon.config import load_config
from daemon.iam import policy
from tests.conftest import ConfigFactory
from tests.support.iam import IamMoto, moto_view, without
from tests.support.resources import demo_resources, unique_env

ACCOUNT = "123456789012"


@pytest.fixture
def iam_moto() -> Any:
    moto = IamMoto().start()
    yield moto
    moto.stop()


@pytest.mark.slow
def test_the_generated_policy_is_enough_and_a_missing_action_is_retried_with_a_clear_error(
    tmp_path: Path, awsd: Any, iam_moto: IamMoto
):
    env = unique_env()
    factory = ConfigFactory(tmp_path, iam_moto.url)
    resources = demo_resources(prune=True, interval=1.0, converge_timeout=2.0)
    path = factory.write({"env": env, "resources": resources})
    document = policy(load_config(path).config, account=ACCOUNT)
    credentials = iam_moto.user("awsd", moto_view(document))

    daemon = awsd(path, env=credentials)
    daemon.wait_ready(timeout=60)
    startup = daemon.logs.wait_for("reconcile pass", timeout=30)
    # 8 created; the lease table was created (tagged) by the lease itself, before the pass
    assert (startup["checked"], startup["applied"], startup["failed"]) == (9, 8, 0), (
        daemon.logs.text()[-3000:]
    )
    follow_up = daemon.logs.wait_for("reconcile pass", count=3, timeout=30)
    assert (follow_up["drifted"], follow_up["failed"]) == (0, 0)
    sqs = iam_moto.client("sqs")
    url = sqs.get_queue_url(QueueName=f"{env}-readings")["QueueUrl"]

    # Take one action away, then give the reconciler something that needs it.
    iam_moto.set_policy("awsd", moto_view(without(document, "sqs:SetQueueAttributes")))
    policy_text = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "30", **policy_text})
    daemon.signal(signal.SIGHUP)

    failed = daemon.logs.wait_for("update failed", resource="queue.readings", timeout=30)
    assert "sqs:SetQueueAttributes" in failed["error"]
    assert "AccessDenied" in failed["error"] and "awsd iam-policy" in failed["error"]
    daemon.logs.wait_for("update failed", resource="queue.readings", count=2, timeout=30)
    status, _ = daemon.http("/healthz")
    assert status == 200 and daemon.proc is not None and daemon.proc.poll() is None
    assert daemon.logs.matching("worker crashed") == []

    iam_moto.set_policy("awsd", moto_view(document))
    daemon.logs.wait_for("update applied", resource="queue.readings", timeout=30)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    assert attrs["Attributes"]["VisibilityTimeout"] == "60"
    assert daemon.stop() == 0
