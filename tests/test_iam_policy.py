"""`awsd iam-policy`: scoped to the declared ARNs, by mode, and covering every call made."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.cli import main
from daemon.config.models import Config
from daemon.iam import CONTRIBUTORS, Grant, action_for, allows, policy
from daemon.resources.base import ENV_TAG, OWNER_TAG
from tests.support.resources import demo_resources, load, unique_env, write_config
from tests.test_reconciler_plan import inject_the_four_drifts
from tests.test_reconciler_worker import services_for

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
        from daemon.config import load_config

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

        CONTRIBUTORS.append(publisher)
        try:
            config = load(configs, "prod", {"mode": "off", "topics": {"news": {}}})
            document = policy(config, account=ACCOUNT, region="eu-west-1")
        finally:
            CONTRIBUTORS.remove(publisher)
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
    from daemon.workers.reconciler import Reconciler

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
