"""`awsd iam-policy` covers every call of every component `make run` starts, on the resources
each call names: `configs/local.toml` (reconciler, SQS poller, SNS publisher with a reading and
`notify`, Kinesis demo producer, reader and S3 archive, probes with an alert topic, CloudWatch
metrics, the CloudWatch Logs shipper, the outbox; the reconciler's Lambda function with its role,
CloudFront distribution and EFS file system) runs in this process on the moto server with
short intervals until each component has done its job; every botocore call is recorded with its
parameters and must be allowed by the generated policy for that config: its IAM action
(`daemon.core.iam.action_for`), its resource ARN and, for PutMetricData, the `cloudwatch:namespace`
condition (tests/support/iam.py `request_resource`).

moto cannot check resources or conditions for most services (see tests/support/iam.py), so this
test is where the ARN scoping of SNS, Kinesis, DynamoDB, CloudWatch and Logs grants is proven.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.config.models import Config
from daemon.core.aws import AwsClients
from daemon.core.events import EventBus
from daemon.core.iam import allows
from daemon.core.metrics import Registry
from daemon.outbox import Outbox
from daemon.runtime.supervisor import Supervisor
from daemon.services import Services
from daemon.telemetry.export import MetricsExport
from daemon.telemetry.log_shipper import LogShipper
from daemon.workers import CATALOG, load_config
from tests.support.iam import Call, CallRecorder, disallowed, local_config, request_resource
from tests.support.messaging import Logs
from tests.support.observe import wait_until
from tests.support.resources import unique_env

ACCOUNT = "123456789012"  # moto's
REGION = "us-east-1"


def jobs_done(recorder: CallRecorder, env: str) -> dict[str, bool]:
    """What each component of local.toml does once, judged by the calls it made."""
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:{env}-"
    return {
        "reconciler": bool(recorder.made("cloudwatch", "PutMetricAlarm")),
        "functions": bool(recorder.made("lambda", "AddPermission")),
        "distributions": bool(
            recorder.made("s3", "PutBucketPolicy", Bucket=f"awsd-{env}-site-{ACCOUNT}")
        ),
        "file_systems": bool(recorder.made("efs", "CreateAccessPoint")),
        "publisher": bool(recorder.made("sns", "PublishBatch", TopicArn=f"{topic}readings")),
        "poller": bool(recorder.made("sqs", "DeleteMessageBatch")),
        "producer": bool(recorder.made("kinesis", "PutRecords")),
        "reader": bool(recorder.made("kinesis", "GetRecords")),
        "archive": bool(recorder.made("s3", "PutObject")),
        "probes": bool(recorder.made("sns", "PublishBatch", TopicArn=f"{topic}probe-alerts")),
        "metrics": bool(recorder.made("cloudwatch", "PutMetricData")),
        "logs": bool(recorder.made("logs", "PutLogEvents")),
    }


def foreign(call: Call, env: str) -> bool:
    """A call on a resource of another environment (seen through a listing)."""
    resource, _ = request_resource(call, region=REGION, account=ACCOUNT)
    return resource not in (None, "*") and env not in str(resource)


async def run_local_config(config: Config, recorder: CallRecorder) -> None:
    """The daemon's parts for `config`, in this process, until every component did its job."""
    metrics = Registry()
    events = EventBus(metrics)
    outbox = Outbox(config.outbox, ":memory:", metrics=metrics, events=events)
    clients = AwsClients(config.aws, metrics=metrics)
    recorder.attach(clients)
    services = Services(config, metrics=metrics, events=events, clients=clients, outbox=outbox)
    supervisor = Supervisor(metrics)
    exporter, shipper = MetricsExport(metrics), LogShipper(metrics)
    loop = asyncio.get_running_loop()
    shipper.attach(config)
    try:
        await shipper.apply(config, clients)
        await exporter.apply(config, clients)
        await supervisor.apply(CATALOG.specs(config), services, config.runtime, loop.time() + 10)
        try:
            await wait_until(lambda: all(jobs_done(recorder, config.env).values()), timeout=60)
        except AssertionError:
            done = jobs_done(recorder, config.env)
            raise AssertionError(f"not every component worked: {done}") from None
    finally:
        await supervisor.stop_all(loop.time() + 10)
        await exporter.close(loop.time() + 3)
        await shipper.close(loop.time() + 3)
        await clients.close()
        await outbox.close()


@pytest.mark.slow  # the local config's SNS readings run `sh -c` commands
async def test_every_call_of_every_component_of_the_local_config_is_allowed(
    moto_endpoint: str, tmp_path: Path
):
    env = unique_env("c")
    config = load_config(local_config(tmp_path, moto_endpoint, env)).config
    recorder = CallRecorder()
    logs = Logs().attach()
    try:
        await run_local_config(config, recorder)
    finally:
        logs.detach()

    document = CATALOG.policy(config, account=ACCOUNT, region=REGION)
    # The reconciler's prune discovery lists every queue, bucket, stream... of the account and
    # reads each one's tags, expecting AccessDenied outside its name template: other tests'
    # resources on the shared moto server are not this config's business.
    ours = [c for c in recorder.calls if not foreign(c, env)]
    assert disallowed(ours, document, region=REGION, account=ACCOUNT) == []
    made = {(c.service, c.operation) for c in recorder.calls}
    assert {("sqs", "ReceiveMessage"), ("kinesis", "ListShards"), ("logs", "CreateLogStream")} <= (
        made
    )

    # ... and nothing more than those resources: scoped, not `*`.
    other = f"arn:aws:sns:{REGION}:{ACCOUNT}:{env}-other"
    assert not allows(document, "sns:Publish", other)
    assert not allows(
        document, "kinesis:GetRecords", f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/x"
    )
    assert not allows(document, "sqs:DeleteMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:x")
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/awsd/{env}"
    assert allows(document, "logs:PutLogEvents", f"{group}:log-stream:any-host")
    assert not allows(document, "logs:PutLogEvents", f"{group}-x:log-stream:h")
    namespace = {"cloudwatch:namespace": "awsd"}
    assert allows(document, "cloudwatch:PutMetricData", "*", namespace)
    assert not allows(document, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "x"})
    assert not allows(document, "cloudwatch:PutMetricData", "*")
