"""`awsd iam-policy`: scoped to the declared ARNs, by mode, and covering every call made."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.cli.main import main
from daemon.config.models import Config
from daemon.core.iam import Grant, action_for, allows
from daemon.core.iam import policy as policy_of
from daemon.resources.kind import ENV_TAG, OWNER_TAG
from daemon.workers import CATALOG
from tests.support.proc import REPO
from tests.support.resources import (
    demo_resources,
    inject_the_four_drifts,
    load,
    services_for,
    unique_env,
    write_config,
)

policy = CATALOG.policy

ACCOUNT = "123456789012"


def actions_on(document: dict[str, Any], resource: str) -> set[str]:
    out: set[str] = set()
    for statement in document["Statement"]:
        resources = statement["Resource"]
        if resource in ([resources] if isinstance(resources, str) else resources):
            out.update(statement["Action"])
    return out


class TestPolicy:
    def test_enforce_mode_scopes_reads_and_writes_to_the_declared_arns(self, tmp_path: Any):
        from daemon.workers import load_config

        path = tmp_path / "c.toml"
        path.write_text(
            'env = "prod"\n[aws]\nregion = "eu-west-1"\n[resources]\nmode = "enforce"\n'
            "[resources.queues.jobs]\n[resources.topics.news]\n"
            '[resources.buckets.site]\nname = "site-{account}"\n'
        )
        document = policy(load_config(path).config, account=ACCOUNT)
        queue = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:prod-jobs"
        assert actions_on(document, queue) == {
            "sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
            "sqs:ListQueueTags", "sqs:SetQueueAttributes", "sqs:TagQueue",
        }  # fmt: skip
        assert "s3:PutEncryptionConfiguration" in actions_on(
            document, f"arn:aws:s3:::site-{ACCOUNT}"
        )
        unscoped = actions_on(document, "*")
        assert unscoped == {"sns:GetSubscriptionAttributes", "sns:SetSubscriptionAttributes"}
        assert not any(a.endswith(("Delete", "DeleteQueue")) for a in actions_on(document, queue))

    def test_detect_mode_asks_only_for_reads(self, configs: Any):
        resources = demo_resources(mode="detect")
        del resources["lease_table"]  # the lease is written in every mode; tested elsewhere
        config = load(configs, "prod", resources)
        document = policy(config, account=ACCOUNT)
        actions = {a for s in document["Statement"] for a in s["Action"]}
        writes = ("Create", "Put", "Set", "Tag", "Update", "Delete", "Subscribe", "Add", "Start")
        assert actions and not [a for a in actions if a.split(":")[1].startswith(writes)]

    def test_prune_lists_everything_but_deletes_only_what_the_template_can_name(self, configs: Any):
        config = load(configs, "prod", {"mode": "enforce", "prune": True, "queues": {"q": {}}})
        document = policy(config, account=ACCOUNT, region="eu-west-1")
        assert "sqs:ListQueues" in actions_on(document, "*")
        pattern = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:prod-*"
        assert "sqs:DeleteQueue" in actions_on(document, pattern)
        assert not allows(document, "sqs:DeleteQueue", f"arn:aws:sqs:eu-west-1:{ACCOUNT}:dev-q")

    def test_mode_off_or_nothing_declared_needs_nothing(self, configs: Any):
        assert (
            policy(load(configs, "prod", {"mode": "off", "queues": {"q": {}}}))["Statement"] == []
        )
        assert policy(load(configs, "prod", {"mode": "enforce"}))["Statement"] == []

    def test_other_components_contribute_through_the_registry(self, configs: Any):
        def publisher(config: Config, scope: Any) -> list[Grant]:
            return [Grant("publisher:alerts", ("sns:Publish",), (scope.arn_of("topics", "news"),))]

        config = load(configs, "prod", {"mode": "off", "topics": {"news": {}}})
        document = policy_of(config, [publisher], account=ACCOUNT, region="eu-west-1")
        assert document["Statement"] == [
            {
                "Sid": "PublisherAlerts",
                "Effect": "Allow",
                "Action": ["sns:Publish"],
                "Resource": f"arn:aws:sns:eu-west-1:{ACCOUNT}:prod-news",
            }
        ]

    def test_the_command_prints_the_policy(self, configs: Any, capsys: pytest.CaptureFixture[str]):
        path = write_config(configs, "prod", {"mode": "enforce", "queues": {"q": {}}})
        assert main(["iam-policy", "--config", str(path), "--account", ACCOUNT]) == 0
        document = json.loads(capsys.readouterr().out)
        assert document["Version"] == "2012-10-17"
        assert allows(document, "sqs:SetQueueAttributes", f"arn:aws:sqs:us-east-1:{ACCOUNT}:prod-q")


def test_operation_names_map_to_iam_actions():
    assert action_for("s3", "HeadBucket") == "s3:ListBucket"
    assert action_for("s3", "GetBucketEncryption") == "s3:GetEncryptionConfiguration"
    assert action_for("sqs", "SendMessageBatch") == "sqs:SendMessage"
    assert action_for("logs", "PutLogEvents") == "logs:PutLogEvents"
    assert action_for("sts", "GetCallerIdentity") is None


async def test_every_call_the_reconciler_makes_is_allowed_by_its_policy(configs: Any, boto: Any):
    """Create everything, fix drift of every kind, prune: each AWS call made (counted by the
    client factory) must be an action the generated policy grants."""
    from daemon.reconcile.passes import Reconciler

    env = unique_env()
    base = demo_resources(prune=True, max_deletes=5)
    changed = demo_resources(prune=True, max_deletes=5)
    changed["streams"]["clicks"].update(shards=3, retention_hours=72, encryption="kms")
    changed["tables"]["leases"].update(ttl_attribute="expires", point_in_time_recovery=True)
    changed["log_groups"]["awsd"]["retention_days"] = 30
    changed["topics"]["alerts"]["display_name"] = "awsd alarms"
    changed["buckets"]["archive"]["logging"] = {"target_bucket": "logs"}
    changed["buckets"]["logs"] = {}

    calls: set[tuple[str, str]] = set()
    for resources, drift in ((base, False), (changed, True)):
        config = load(configs, env, resources)
        async with services_for(config) as services:
            if drift:
                inject_the_four_drifts(boto, env)
                boto("sqs").create_queue(
                    QueueName=f"{env}-gone", tags={OWNER_TAG: "awsd", ENV_TAG: env}
                )
            reconciler = Reconciler(config, services)
            result = await reconciler.run_pass()
            await reconciler.close()
            assert result.ok, result
        document = policy(config, account=ACCOUNT, region="us-east-1")
        family = {f.name: f for f in services.metrics.families()}["awsd_aws_api_calls_total"]
        made = {(labels["service"], labels["operation"]) for labels, _ in family.series()}
        missing = [
            (service, op, action)
            for service, op in sorted(made)
            if (action := action_for(service, op)) is not None and not allows(document, action)
        ]
        assert not missing, missing
        calls |= made
    assert ("sqs", "DeleteQueue") in calls and ("kinesis", "UpdateShardCount") in calls


# --- every component contributes -----------------------------------------------------------------


def offline_policy(offline_configs: Any, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    from daemon.workers import load_config

    path = offline_configs.write({"aws": {"region": "eu-west-1"}, **data}, health=False)
    return policy(load_config(path).config, account=ACCOUNT, **kwargs)


def statements_with(document: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in document["Statement"] if action in s["Action"]]


TOPICS = {"resources": {"mode": "off", "topics": {"pager": {}, "ops": {"name": "ops-exact"}}}}


class TestComponents:
    def test_probe_alerts_publish_to_their_declared_topics(self, offline_configs: Any):
        document = offline_policy(
            offline_configs,
            {
                **TOPICS,
                "probes": {
                    "defaults": {"alert": {"topic": "pager"}},
                    "endpoints": {
                        "a": {"url": "http://127.0.0.1:1/"},
                        "b": {"url": "http://127.0.0.1:1/", "alert": {"topic": "ops"}},
                    },
                },
            },
        )
        arn = f"arn:aws:sns:eu-west-1:{ACCOUNT}:"
        assert statements_with(document, "sns:Publish") == [
            {
                "Sid": "Probes",
                "Effect": "Allow",
                "Action": ["sns:Publish"],
                "Resource": [f"{arn}ops-exact", f"{arn}test-pager"],
            }
        ]

    def test_sms_needs_publish_on_any_resource_which_makes_topic_grants_redundant(
        self, offline_configs: Any
    ):
        document = offline_policy(
            offline_configs,
            {
                **TOPICS,
                "probes": {
                    "endpoints": {
                        "a": {
                            "url": "http://127.0.0.1:1/",
                            "alert": {"topic": "pager", "sms": ["+14155550100"]},
                        }
                    }
                },
            },
        )
        # A phone number is no resource: AWS authorises Publish to one against `*` only.
        assert statements_with(document, "sns:Publish") == [
            {"Sid": "AnyResource", "Effect": "Allow", "Action": ["sns:Publish"], "Resource": "*"}
        ]

    def test_metrics_are_put_only_in_the_configured_namespace(self, offline_configs: Any):
        data = {"metrics": {"namespace": "Shop/awsd", "cloudwatch": {"enabled": True}}}
        document = offline_policy(offline_configs, data)
        assert document["Statement"] == [
            {
                "Sid": "Metrics",
                "Effect": "Allow",
                "Action": ["cloudwatch:PutMetricData"],
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": "Shop/awsd"}},
            }
        ]
        emf_only = {"metrics": {"emf": {"enabled": True}}}
        assert offline_policy(offline_configs, emf_only)["Statement"] == []

    def test_the_log_shipper_is_scoped_to_its_group_for_every_host(self, offline_configs: Any):
        shipping = {"enabled": True, "log_group": "/shop/{env}", "log_stream": "{instance_id}"}
        document = offline_policy(offline_configs, {"log": {"cloudwatch": shipping}})
        group = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/shop/test"
        assert actions_on(document, f"{group}:log-stream:*") == {"logs:PutLogEvents"}
        assert actions_on(document, group) == {
            "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutRetentionPolicy",
            "logs:TagResource",
        }  # fmt: skip
        put_only = {**shipping, "create": False}
        document = offline_policy(offline_configs, {"log": {"cloudwatch": put_only}})
        assert [s["Action"] for s in document["Statement"]] == [["logs:PutLogEvents"]]

    def test_forwarding_to_a_stream_and_a_custom_producer_put_records_and_list_shards(
        self, offline_configs: Any
    ):
        document = offline_policy(
            offline_configs,
            {
                "resources": {"mode": "off", "streams": {"clicks": {}}, "queues": {"in": {}}},
                "sqs": {"in": {"queue": "in", "handler": {"kind": "forward", "kinesis": "clicks"}}},
                "custom": {
                    "demo": {
                        "entrypoint": "daemon.kinesis.demo:produce",
                        "options": {"stream": "clicks"},
                    }
                },
            },
        )
        stream = f"arn:aws:kinesis:eu-west-1:{ACCOUNT}:stream/test-clicks"
        assert actions_on(document, stream) == {"kinesis:PutRecords", "kinesis:ListShards"}
        (statement,) = statements_with(document, "kinesis:PutRecords")
        assert statement["Sid"] == "CustomDemoSqsIn"

    def test_ad_hoc_publish_targets_are_not_granted(self, offline_configs: Any):
        """`awsd publish --topic other` or `--phone`: not in the config, so denied by AWS until
        an operator grants them (docs/reconciler.md "IAM policy generation")."""
        document = offline_policy(offline_configs, {**TOPICS, "sns": {"topic": "pager"}})
        assert allows(document, "sns:Publish", f"arn:aws:sns:eu-west-1:{ACCOUNT}:test-pager")
        assert not allows(document, "sns:Publish", f"arn:aws:sns:eu-west-1:{ACCOUNT}:other")
        assert not allows(document, "sns:Publish", "*")


class TestReferences:
    def test_check_config_names_an_undeclared_probe_alert_topic(self, offline_configs: Any):
        from daemon.config import ConfigError
        from daemon.workers import load_config

        probes = {
            "defaults": {"alert": {"topic": "pager"}},
            "endpoints": {
                "a": {"url": "http://127.0.0.1:1/"},
                "b": {"url": "http://127.0.0.1:1/", "alert": {"topic": "nope"}},
            },
        }
        path = offline_configs.write({**TOPICS, "probes": probes}, health=False)
        with pytest.raises(ConfigError) as failure:
            load_config(path)
        text = failure.value.render()
        assert "probes.endpoints.b.alert.topic: names topic 'nope', which is not declared" in text
        assert "probes.defaults" not in text and "endpoints.a" not in text
        # An ARN of the wrong service is refused by the field's type, before any reference check.
        wrong = {"url": "http://127.0.0.1:1/", "alert": {"topic": "arn:aws:sqs:us-east-1:1:q"}}
        probes["endpoints"] = {"c": wrong}
        path = offline_configs.write({**TOPICS, "probes": probes}, health=False)
        with pytest.raises(ConfigError) as failure:
            load_config(path)
        assert (
            "probes.endpoints.c.alert.topic: 'arn:aws:sqs:us-east-1:1:q' is not an "
            "ARN of sns" in failure.value.render()
        )

    def test_check_config_names_an_undeclared_custom_destination(self, offline_configs: Any):
        from daemon.config import ConfigError
        from daemon.workers import load_config

        custom = {"entrypoint": "daemon.kinesis.demo:produce", "options": {"stream": "clickz"}}
        data = {"resources": {"streams": {"clicks": {}}}, "custom": {"demo": custom}}
        path = offline_configs.write(data, health=False)
        with pytest.raises(ConfigError) as failure:
            load_config(path)
        assert "custom.demo.options.stream: names stream 'clickz', which is not declared" in (
            failure.value.render()
        )


async def test_logical_names_of_every_kind_resolve_in_one_place(offline_configs: Any):
    from daemon.core.aws import AwsClients
    from daemon.core.events import EventBus
    from daemon.core.metrics import Registry
    from daemon.outbox import Outbox
    from daemon.services import Services
    from daemon.workers import load_config

    resources = {
        "mode": "off",
        "streams": {"clicks": {}},
        "buckets": {"archive": {"name": "awsd-{env}-{region}"}},
    }
    path = offline_configs.write(
        {"aws": {"region": "eu-west-1"}, "resources": resources}, health=False
    )
    config = load_config(path).config
    metrics = Registry()
    outbox = Outbox(config.outbox, ":memory:", metrics=metrics, events=EventBus(metrics))
    clients = AwsClients(config.aws)
    services = Services(
        config, metrics=metrics, events=outbox.events, clients=clients, outbox=outbox
    )
    try:
        targets = services.targets
        assert await targets.aws_name("streams", "clicks") == "test-clicks"
        assert await targets.aws_name("buckets", "archive") == "awsd-test-eu-west-1"
        assert await targets.aws_name("buckets", "arn:aws:s3:::theirs") == "theirs"
        stream = "arn:aws:kinesis:eu-west-1:1:stream/s"
        assert await targets.aws_name("streams", stream) == stream
    finally:
        await clients.close()
        await outbox.close()


def test_the_shipped_instance_profile_policy_is_the_prod_templates():
    """deploy/iam/instance-profile-policy.json is `awsd iam-policy` for configs/prod.toml (what
    an instance starts from); regenerate it when a component's needs change."""
    from daemon.workers import load_config

    shipped = json.loads((REPO / "deploy/iam/instance-profile-policy.json").read_text())
    generated = policy(load_config(REPO / "configs/prod.toml", environ={}).config)
    assert shipped == generated, (
        "deploy/iam/instance-profile-policy.json is stale; regenerate it with\n"
        "  env -i .venv/bin/awsd iam-policy --config configs/prod.toml "
        "> deploy/iam/instance-profile-policy.json"
    )
