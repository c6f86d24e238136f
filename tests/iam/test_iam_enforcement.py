"""The daemon runs with credentials that hold only `awsd iam-policy`'s output, on a moto server
that enforces IAM (tests/support/iam.py): every worker works, and one action taken away gives
that worker a clear AccessDenied (naming `awsd iam-policy`), retried without crashing anything,
until the action is given back.

What moto enforces, and so what these tests prove (details in tests/support/iam.py): every call
of every service is checked against the policy's *actions*; the *resources* are checked only for
S3 (buckets, and objects under them) and SQS (queues that exist); for SNS, Kinesis, DynamoDB,
CloudWatch and CloudWatch Logs the statements are widened to `*` before moto sees them, and
conditions (PutMetricData's `cloudwatch:namespace`) are dropped, because moto evaluates those
requests against `*` and never fills condition keys. The ARNs and the condition of those services
are proven instead by tests/iam/test_iam_completeness.py, which compares every call's resource with
the policy.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.core.local_aws import free_port
from daemon.workers import CATALOG, load_config
from tests.conftest import ConfigFactory
from tests.support.iam import IamMoto, local_config, moto_names, moto_view, without
from tests.support.proc import awsd_cli
from tests.support.resources import demo_resources, unique_env

ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
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
    document = CATALOG.policy(load_config(path).config, account=ACCOUNT)
    credentials = iam_moto.user("reconciler", moto_view(document))

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
    iam_moto.set_policy("reconciler", moto_view(without(document, "sqs:SetQueueAttributes")))
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

    iam_moto.set_policy("reconciler", moto_view(document))
    daemon.logs.wait_for("update applied", resource="queue.readings", timeout=30)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    assert attrs["Attributes"]["VisibilityTimeout"] == "60"
    assert daemon.stop() == 0


# --- every worker -----------------------------------------------------------------------------

FORWARDING = {
    # local.toml's poller, forwarding what it reads to another declared queue (sqs:SendMessage
    # through the outbox) instead of logging it.
    "sqs": {"readings": {"handler": {"kind": "forward", "sqs": "forwarded"}}},
    "resources": {"queues": {"forwarded": {}}},
    # moto checks a signature over the body it decompressed, so a gzipped request fails with
    # SignatureDoesNotMatch: the shipper's bodies go uncompressed here, and so do
    # PutMetricData's (AWS_DISABLE_REQUEST_COMPRESSION below).
    "log": {"cloudwatch": {"gzip": False}},
}
UNCOMPRESSED = {"AWS_DISABLE_REQUEST_COMPRESSION": "true"}

DENIED = {
    # one action per worker -> what that worker logs when AWS refuses it
    "sqs:DeleteMessage": ("SQS call failed; retrying", {"operation": "DeleteMessageBatch"}),
    "sns:Publish": ("outbox delivery failed; retrying later", {"kind": "sns"}),
    "kinesis:GetRecords": ("GetRecords failed; retrying", {}),
    "cloudwatch:PutMetricData": ("PutMetricData failed; data points kept for the next flush", {}),
    "logs:PutLogEvents": ("PutLogEvents failed; the batch waits for the next try", {}),
}


def until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def denied(event: dict[str, Any]) -> bool:
    error = str(event.get("error", ""))
    return "AccessDenied" in error and "awsd iam-policy" in error


@pytest.mark.slow
def test_every_worker_works_with_only_the_policy_and_a_missing_action_is_retried(
    tmp_path: Path, awsd: Any, iam_moto: IamMoto
):
    env = unique_env("i")
    port = free_port()
    path = local_config(tmp_path, iam_moto.url, env, health_port=port, **FORWARDING)
    document = CATALOG.policy(load_config(path).config, account=ACCOUNT)
    credentials = iam_moto.user("every-worker", moto_view(document))
    daemon = awsd(path, env={**credentials, **UNCOMPRESSED})
    daemon.wait_ready(timeout=60)

    def status() -> dict[str, Any]:
        code, body = daemon.http("/status")
        assert code == 200, body
        return body  # type: ignore[no-any-return]

    def worker(name: str) -> dict[str, Any]:
        return status()["workers"][name]  # type: ignore[no-any-return]

    sqs, s3, logs = iam_moto.client("sqs"), iam_moto.client("s3"), iam_moto.client("logs")
    cloudwatch = iam_moto.client("cloudwatch")
    bucket = f"awsd-{env}-stream-archive-{ACCOUNT}"
    group = f"/awsd/{env}"

    def archived() -> int:
        return int(s3.list_objects_v2(Bucket=bucket, Prefix="raw/").get("KeyCount", 0))

    def forwarded() -> list[Any]:
        url = sqs.get_queue_url(QueueName=f"{env}-forwarded")["QueueUrl"]
        return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])

    # 1. Everything works with the generated policy and nothing more.
    startup = daemon.logs.wait_for("reconcile pass", timeout=30)
    assert startup["failed"] == 0, daemon.logs.text()[-3000:]
    # a reading: the publisher (sns:Publish), SNS -> the readings queue, the poller, forward
    reading = until("a reading forwarded", forwarded)
    assert '"name":"load"' in reading[0]["Body"].replace(" ", "")
    until("the poller deletes", lambda: worker("sqs:readings")["deleted"] > 0)
    until("records produced, read and archived", archived)  # PutRecords, GetRecords, PutObject
    until(
        "the probe alert delivered to its topic",
        lambda: (
            (worker("probes")["endpoints"]["closed-port"]["alert"]["notification"] or {}).get(
                "status"
            )
            == "delivered"
        ),
    )
    until(
        "metrics in CloudWatch",
        lambda: cloudwatch.list_metrics(
            Namespace="awsd", Dimensions=[{"Name": "environment", "Value": env}]
        )["Metrics"],
    )
    until("logs in CloudWatch Logs", lambda: logs.filter_log_events(logGroupName=group)["events"])
    assert daemon.logs.matching(where=denied) == []
    # `awsd plan` on what the startup pass made from configs/local.toml (with the same
    # credentials: the policy covers planning too): nothing left to do.
    planned = awsd_cli("plan", "--config", str(path), env=credentials)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert planned.stdout.splitlines()[-1].startswith("No changes."), planned.stdout

    # 2. One action per worker taken away: each logs a clear AccessDenied and keeps retrying.
    iam_moto.set_policy("every-worker", moto_view(without(document, *DENIED)))
    readings_url = sqs.get_queue_url(QueueName=f"{env}-readings")["QueueUrl"]
    for n in range(3):  # the publisher is denied too: give the poller something to ack
        sqs.send_message(QueueUrl=readings_url, MessageBody=f"direct {n}")
    for action, (event, fields) in DENIED.items():
        found = daemon.logs.wait_for(event, where=denied, count=2, timeout=30, **fields)
        # the denied action, as moto names it (moto checks sqs:DeleteMessageBatch, where AWS
        # checks and names sqs:DeleteMessage)
        assert any(name in found["error"] for name in (action, *moto_names(action))), found
    code, health = daemon.http("/healthz")
    assert code == 200, health
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert daemon.logs.matching("worker crashed") == []
    restarts = {name: w["restarts"] for name, w in status()["workers"].items()}
    assert set(restarts.values()) == {0}, restarts

    # 3. Given back, each recovers on its own: no restart, nothing reloaded.
    deleted = worker("sqs:readings")["deleted"]
    objects = archived()
    iam_moto.set_policy("every-worker", moto_view(document))
    until("the poller's acks go through", lambda: worker("sqs:readings")["deleted"] > deleted)
    until(
        "the outbox delivers to SNS again",
        lambda: not any(k.startswith("sns:") for k in worker("outbox")["outbox"]["failing"]),
    )
    until("the reader reads again", lambda: archived() > objects)
    until("metrics are sent again", lambda: status()["metrics"]["last_error"] is None)
    until("logs are shipped again", lambda: status()["cloudwatch_logs"]["last_error"] is None)
    assert daemon.logs.matching("worker crashed") == []
    assert {w["restarts"] for w in status()["workers"].values()} == {0}
    assert daemon.stop() == 0
