"""Helpers for reconciler tests: unique environments, configs with resources, sessions, CLI runs."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from daemon.config.models import Config
from daemon.config.outbox import OutboxConfig
from daemon.core.aws import AwsClients
from daemon.core.events import EventBus
from daemon.core.metrics import Registry
from daemon.outbox import Outbox
from daemon.reconcile.apply import Applier, ApplyReport
from daemon.reconcile.context import Context
from daemon.reconcile.plan import Plan, make_plan
from daemon.services import Services
from daemon.workers import CATALOG, load_config

MOTO_ACCOUNT = "123456789012"


def unique_env(prefix: str = "r") -> str:
    """An environment name no other test uses: it prefixes every AWS name and ownership tag,
    so tests sharing the session's moto server never see each other's resources as theirs."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def write_config(configs: Any, env: str, resources: dict[str, Any], **sections: Any) -> Path:
    data = {"env": env, "resources": {"converge_timeout": 5.0, **resources}, **sections}
    return configs.write(data, name=f"{env}.toml")  # type: ignore[no-any-return]


def load(configs: Any, env: str, resources: dict[str, Any], **sections: Any) -> Config:
    return load_config(write_config(configs, env, resources, **sections)).config


@contextlib.asynccontextmanager
async def session(
    config: Config, *, metrics: Registry | None = None, **kwargs: Any
) -> AsyncIterator[Context]:
    clients = AwsClients(config.aws, metrics=metrics)
    try:
        kwargs.setdefault("used", CATALOG.worker_references(config))
        ctx = Context(config, clients, **kwargs)
        await ctx.start()
        yield ctx
    finally:
        await clients.close()


async def plan_and_apply(ctx: Context) -> tuple[Plan, ApplyReport]:
    plan = await make_plan(ctx)
    report = await Applier(ctx).apply(plan)
    assert report.ok, [o for o in report.outcomes if o.result != "done"]
    return plan, report


def cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    """`awsd ARGS` in this process: (exit code, stdout, stderr). The commands quiet the logs
    for their own output; the test process gets its logging configuration back after."""
    import logging

    import structlog

    from daemon.cli.main import main

    saved, handlers = structlog.get_config(), list(logging.getLogger().handlers)
    try:
        code = main(list(args))
    finally:
        structlog.configure(**saved)
        root = logging.getLogger()
        root.handlers[:] = handlers
    out, err = capsys.readouterr()
    return code, out, err


def changed(plan: Plan) -> dict[str, list[str]]:
    """Resource address -> attribute paths that differ, for the resources with changes."""
    return {r.resource: [i.path for i in r.items] for r in plan.resources if r.action != "no-op"}


def demo_resources(**overrides: Any) -> dict[str, Any]:
    """One of each kind, wired together the way configs/local.toml is."""
    resources: dict[str, Any] = {
        "mode": "enforce",
        "lease_table": "leases",
        "topics": {
            "readings": {
                "subscriptions": [
                    {
                        "protocol": "sqs",
                        "endpoint": "readings",
                        "raw_delivery": True,
                        "filter_policy": {"kind": ["reading"]},
                    }
                ],
                "tags": {"team": "edge"},
            },
            "alerts": {"display_name": "awsd alerts"},
        },
        "queues": {
            "readings": {
                "visibility_timeout": 60,
                "receive_wait": 20,
                "redrive": {"dead_letter_queue": "readings-dlq", "max_receive_count": 5},
            },
            "readings-dlq": {"message_retention": 1209600},
        },
        "streams": {"clicks": {"shards": 2, "retention_hours": 48}},
        "buckets": {
            "archive": {
                "versioning": True,
                "encryption": "sse-s3",
                "block_public_access": True,
                "deny_unencrypted_uploads": True,
                "lifecycle": [{"id": "expire-raw", "prefix": "raw/", "expire_days": 30}],
                "cors": [{"allowed_origins": ["https://example.com"], "allowed_methods": ["GET"]}],
            }
        },
        "log_groups": {"awsd": {"name": "/awsd/{env}", "retention_days": 14}},
        "alarms": {
            "probe-down": {
                "metric": "probe_success",
                "statistic": "Minimum",
                "comparison": "<",
                "threshold": 1,
                "evaluation_periods": 3,
                "alarm_actions": ["alerts"],
            }
        },
        "tables": {"leases": {"partition_key": "lease_key"}},
    }
    resources.update(overrides)
    return resources


def inject_the_four_drifts(boto: Any, env: str) -> None:
    """Visibility timeout changed, subscription deleted, bucket encryption removed, alarm
    threshold changed: the drift the issue names, done the way a person would do it."""
    sqs, sns, s3, cw = boto("sqs"), boto("sns"), boto("s3"), boto("cloudwatch")
    url = sqs.get_queue_url(QueueName=f"{env}-readings")["QueueUrl"]
    # The policy goes along because moto (unlike AWS) drops it on any SetQueueAttributes call
    # without it.
    policy = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "30", **policy})
    topic = f"arn:aws:sns:us-east-1:{MOTO_ACCOUNT}:{env}-readings"
    for sub in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]:
        sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
    s3.delete_bucket_encryption(Bucket=f"{env}-archive")
    alarm = cw.describe_alarms(AlarmNames=[f"{env}-probe-down"])["MetricAlarms"][0]
    cw.put_metric_alarm(
        AlarmName=alarm["AlarmName"],
        MetricName=alarm["MetricName"],
        Namespace=alarm["Namespace"],
        Statistic=alarm["Statistic"],
        Period=alarm["Period"],
        EvaluationPeriods=alarm["EvaluationPeriods"],
        Threshold=5.0,
        ComparisonOperator=alarm["ComparisonOperator"],
        AlarmActions=alarm["AlarmActions"],
    )


@contextlib.asynccontextmanager
async def services_for(config: Config) -> AsyncIterator[Services]:
    metrics = Registry()
    events = EventBus(metrics)
    outbox = Outbox(OutboxConfig(path=":memory:"), ":memory:", metrics=metrics, events=events)
    services = Services(
        config,
        metrics=metrics,
        events=events,
        clients=AwsClients(config.aws, metrics=metrics),
        outbox=outbox,
    )
    try:
        yield services
    finally:
        await services.close()
        await outbox.close()
