"""Plan and apply against the real moto server: creates, drift, ownership, prune, AWS timing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon.core.metrics import Registry
from daemon.reconcile.apply import Applier
from daemon.reconcile.plan import make_plan
from daemon.resources.kind import ENV_TAG, OWNER_TAG
from daemon.resources.queues import recreate_delay
from daemon.workers import load_config
from tests.support.aws_front import AwsFront
from tests.support.resources import (
    changed,
    cli,
    demo_resources,
    inject_the_four_drifts,
    load,
    plan_and_apply,
    session,
    unique_env,
    write_config,
)

ACCOUNT = "123456789012"


class TestPlanAndApply:
    def test_empty_account_plans_all_creates_then_apply_leaves_no_changes(
        self, configs: Any, capsys: pytest.CaptureFixture[str]
    ):
        env = unique_env()
        path = write_config(configs, env, demo_resources())

        code, out, _ = cli(capsys, "plan", "--config", str(path))
        assert code == 2
        assert "Plan: 9 to create, 0 to update, 0 to replace, 0 to delete." in out
        code, out, _ = cli(capsys, "plan", "--config", str(path), "--json")
        assert code == 2
        plan = json.loads(out)
        assert {i["action"] for i in plan["items"]} == {"create"}
        assert {r["resource"] for r in plan["resources"]} == {
            "topic.readings", "topic.alerts", "queue.readings", "queue.readings-dlq",
            "stream.clicks", "bucket.archive", "log_group.awsd", "alarm.probe-down",
            "table.leases",
        }  # fmt: skip

        code, out, _ = cli(capsys, "apply", "--config", str(path), "--auto-approve")
        assert code == 0, out
        assert "queue.readings: created" in out
        assert "Apply complete: 9 created, 0 updated, 0 replaced, 0 deleted." in out

        code, out, _ = cli(capsys, "plan", "--config", str(path))
        assert (code, out.splitlines()[-1]) == (
            0,
            "No changes. 9 resources match the configuration.",
        )

    async def test_injected_drift_shows_exactly_those_changes_and_apply_fixes_them(
        self, configs: Any, boto: Any
    ):
        env = unique_env()
        config = load(configs, env, demo_resources())
        async with session(config) as ctx:
            await plan_and_apply(ctx)
            inject_the_four_drifts(boto, env)

            plan = await make_plan(ctx)
            queue_arn = f"arn:aws:sqs:us-east-1:{ACCOUNT}:{env}-readings"
            assert changed(plan) == {
                "queue.readings": ["visibility_timeout"],
                "topic.readings": [f"subscriptions[sqs:{queue_arn}]"],
                "bucket.archive": ["encryption"],
                "alarm.probe-down": ["threshold"],
            }
            by = {i.resource: i for i in plan.items if i.action == "update"}
            assert (by["queue.readings"].expected, by["queue.readings"].actual) == (60, 30)
            assert (by["alarm.probe-down"].expected, by["alarm.probe-down"].actual) == (1, 5)
            assert plan.exit_code == 2

            report = await Applier(ctx).apply(plan)
            assert report.ok and report.count("done", "update") == 4
            assert changed(await make_plan(ctx)) == {}

    async def test_an_unreadable_resource_is_an_error_never_a_create(self, configs: Any):
        from daemon.core.local_aws import free_port

        env = unique_env()
        dead = f"http://127.0.0.1:{free_port()}"
        config = load(
            configs,
            env,
            {"queues": {"jobs": {}}, "topics": {"news": {}}},
            aws={"endpoints": {"sqs": dead}, "connect_timeout": 0.5, "max_attempts": 1},
        )
        async with session(config) as ctx:
            plan = await make_plan(ctx)
        assert [f.resource for f in plan.failures] == ["queue.jobs"]
        assert "Could not connect" in plan.failures[0].error
        assert [r.resource for r in plan.resources] == ["topic.news"]
        assert plan.exit_code == 1

    async def test_ignored_paths_are_never_compared(self, configs: Any, boto: Any):
        env = unique_env()
        resources = {
            "queues": {
                "jobs": {"visibility_timeout": 60, "delay": 5, "ignore": ["visibility_timeout"]}
            }
        }
        config = load(configs, env, resources)
        async with session(config) as ctx:
            await plan_and_apply(ctx)
            url = boto("sqs").get_queue_url(QueueName=f"{env}-jobs")["QueueUrl"]
            boto("sqs").set_queue_attributes(
                QueueUrl=url, Attributes={"VisibilityTimeout": "10", "DelaySeconds": "1"}
            )
            assert changed(await make_plan(ctx)) == {"queue.jobs": ["delay"]}

    async def test_attributes_the_config_does_not_write_are_not_drift(
        self, configs: Any, boto: Any
    ):
        env = unique_env()
        config = load(configs, env, {"queues": {"jobs": {"delay": 5}}})
        async with session(config) as ctx:
            await plan_and_apply(ctx)
            url = boto("sqs").get_queue_url(QueueName=f"{env}-jobs")["QueueUrl"]
            boto("sqs").set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "99"})
            boto("sqs").tag_queue(QueueUrl=url, Tags={"cost-center": "42"})
            assert changed(await make_plan(ctx)) == {}

    async def test_a_policy_written_differently_but_meaning_the_same_is_not_drift(
        self, configs: Any, boto: Any
    ):
        env = unique_env()
        config = load(
            configs,
            env,
            {
                "topics": {"t": {"subscriptions": [{"protocol": "sqs", "endpoint": "q"}]}},
                "queues": {"q": {}},
            },
        )
        async with session(config) as ctx:
            await plan_and_apply(ctx)
            sqs = boto("sqs")
            url = sqs.get_queue_url(QueueName=f"{env}-q")["QueueUrl"]
            policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])[
                "Attributes"]["Policy"])  # fmt: skip
            statement = policy["Statement"][0]
            statement["Action"] = [statement["Action"]]  # a one-element array, keys reordered
            rewritten = {"Statement": [dict(reversed(statement.items()))], **policy}
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(rewritten)})
            assert changed(await make_plan(ctx)) == {}


class TestOwnership:
    async def test_untagged_lookalikes_and_other_environments_are_never_deleted(
        self, configs: Any, boto: Any
    ):
        env = unique_env()
        sqs = boto("sqs")
        lookalike = sqs.create_queue(QueueName=f"{env}-old")["QueueUrl"]
        other_env = sqs.create_queue(
            QueueName=f"{env}-other", tags={OWNER_TAG: "awsd", ENV_TAG: "someone-else"}
        )["QueueUrl"]
        ours = sqs.create_queue(QueueName=f"{env}-gone", tags={OWNER_TAG: "awsd", ENV_TAG: env})[
            "QueueUrl"
        ]
        config = load(configs, env, {"prune": True, "queues": {"kept": {}}})
        async with session(config) as ctx:
            plan = await make_plan(ctx)
            deletes = [r.resource for r in plan.resources if r.action == "delete"]
            assert deletes == [f"queue.{env}-gone"]
            report = await Applier(ctx).apply(plan)
            assert report.ok
        urls = sqs.list_queues(QueueNamePrefix=env).get("QueueUrls", [])
        assert lookalike in urls and other_env in urls
        assert ours not in urls

    def test_prune_is_capped_and_blocks_every_deletion_beyond_the_cap(
        self, configs: Any, boto: Any, capsys: pytest.CaptureFixture[str]
    ):
        env = unique_env()
        sqs = boto("sqs")
        for i in range(3):
            sqs.create_queue(QueueName=f"{env}-old{i}", tags={OWNER_TAG: "awsd", ENV_TAG: env})
        path = write_config(configs, env, {"prune": True, "max_deletes": 2, "queues": {"q": {}}})
        code, out, _ = cli(capsys, "apply", "--config", str(path), "--auto-approve")
        assert code == 1
        assert "3 deletions exceed resources.max_deletes = 2" in out
        assert len(sqs.list_queues(QueueNamePrefix=f"{env}-old")["QueueUrls"]) == 3

        path = write_config(configs, env, {"prune": True, "max_deletes": 3, "queues": {"q": {}}})
        code, out, _ = cli(capsys, "apply", "--config", str(path), "--auto-approve")
        assert code == 0, out
        assert "0 updated, 0 replaced, 3 deleted" in out
        assert sqs.list_queues(QueueNamePrefix=f"{env}-old").get("QueueUrls", []) == []

    async def test_without_prune_nothing_is_deleted(self, configs: Any, boto: Any):
        env = unique_env()
        boto("sqs").create_queue(QueueName=f"{env}-old", tags={OWNER_TAG: "awsd", ENV_TAG: env})
        config = load(configs, env, {"queues": {"q": {}}})
        async with session(config) as ctx:
            plan = await make_plan(ctx)
        assert [r.action for r in plan.resources] == ["create"]

    async def test_an_untagged_declared_resource_is_adopted_by_tagging_it(
        self, configs: Any, boto: Any
    ):
        env = unique_env()
        url = boto("sqs").create_queue(
            QueueName=f"{env}-jobs", Attributes={"VisibilityTimeout": "45"}
        )["QueueUrl"]
        config = load(configs, env, {"queues": {"jobs": {"visibility_timeout": 45}}})
        async with session(config) as ctx:
            plan = await make_plan(ctx)
            (res,) = plan.resources
            assert (res.action, res.note.split(":")[0]) == ("update", "adopting")
            assert [i.path for i in res.items] == ["tags.managed-by", "tags[awsd:env]"]
            await Applier(ctx).apply(plan)
        assert boto("sqs").list_queue_tags(QueueUrl=url)["Tags"] == {
            OWNER_TAG: "awsd",
            ENV_TAG: env,
        }

    def test_a_resource_of_another_environment_or_tool_is_blocked(
        self, configs: Any, boto: Any, capsys: pytest.CaptureFixture[str]
    ):
        env = unique_env()
        sqs = boto("sqs")
        sqs.create_queue(QueueName=f"{env}-shared", tags={OWNER_TAG: "awsd", ENV_TAG: "prod"})
        sqs.create_queue(QueueName=f"{env}-tf", tags={OWNER_TAG: "terraform"})
        path = write_config(
            configs,
            env,
            {"queues": {"shared": {"delay": 3}, "tf": {"delay": 3}}},
        )
        code, out, _ = cli(capsys, "apply", "--config", str(path), "--auto-approve")
        assert code == 1
        assert "belongs to awsd environment 'prod'" in out
        assert "tagged managed-by = 'terraform'" in out
        url = sqs.get_queue_url(QueueName=f"{env}-shared")["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])
        assert attrs["Attributes"]["DelaySeconds"] == "0"

    async def test_a_key_schema_change_replaces_an_owned_table(self, configs: Any, boto: Any):
        env = unique_env()
        async with session(
            load(configs, env, {"tables": {"leases": {"partition_key": "id"}}})
        ) as ctx:
            await plan_and_apply(ctx)
        config = load(configs, env, {"tables": {"leases": {"partition_key": "key"}}})
        async with session(config) as ctx:
            plan = await make_plan(ctx)
            (res,) = plan.resources
            assert res.action == "replace" and not res.blocked
            assert [(i.path, i.forces_replacement) for i in res.items] == [("partition_key", True)]
            report = await Applier(ctx).apply(plan)
            assert report.ok
        table = boto("dynamodb").describe_table(TableName=f"{env}-leases")["Table"]
        assert table["KeySchema"] == [{"AttributeName": "key", "KeyType": "HASH"}]

    async def test_a_table_awsd_did_not_create_is_never_replaced(self, configs: Any, boto: Any):
        env = unique_env()
        boto("dynamodb").create_table(
            TableName=f"{env}-leases",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        config = load(configs, env, {"tables": {"leases": {"partition_key": "key"}}})
        async with session(config) as ctx:
            (res,) = (await make_plan(ctx)).resources
        assert res.action == "replace"
        assert res.blocked == "exists without awsd's tags: awsd replaces only what it created"


class TestAwsTiming:
    def test_queue_deleted_recently_means_waiting_61_seconds(self):
        from botocore.exceptions import ClientError

        def error(code: str) -> ClientError:
            return ClientError({"Error": {"Code": code, "Message": "x"}}, "CreateQueue")

        assert recreate_delay(error("AWS.SimpleQueueService.QueueDeletedRecently")) == 61.0
        assert recreate_delay(error("QueueDeletedRecently")) == 61.0
        assert recreate_delay(error("QueueAlreadyExists")) is None

    async def test_create_after_queue_deleted_recently_waits_then_succeeds(
        self, configs: Any, aws_front: AwsFront, boto: Any
    ):
        env = unique_env()
        aws_front.fail(
            "CreateQueue",
            "com.amazonaws.sqs#QueueDeletedRecently",
            message="You must wait 60 seconds after deleting a queue before you can create "
            "another queue with the same name.",
            query_code="AWS.SimpleQueueService.QueueDeletedRecently",
        )
        waits: list[float] = []

        async def wait(seconds: float) -> bool:
            waits.append(seconds)  # the decision is tested, not a minute of the test's time
            return True

        config = load(configs, env, {"queues": {"jobs": {}}}, aws={"endpoint_url": aws_front.url})
        async with session(config, wait=wait) as ctx:
            progress: list[str] = []
            plan = await make_plan(ctx)
            report = await Applier(
                ctx, progress=lambda stage, res, detail, _o: progress.append(detail)
            ).apply(plan)
        assert waits == [61.0]
        assert report.ok and len(aws_front.calls("CreateQueue", service="sqs")) == 2
        assert any("within 60 s of deleting" in p for p in progress)
        assert boto("sqs").get_queue_url(QueueName=f"{env}-jobs")

    async def test_a_queue_created_meanwhile_with_other_attributes_is_adopted_and_updated(
        self, configs: Any, boto: Any
    ):
        env = unique_env()
        config = load(configs, env, {"queues": {"jobs": {"visibility_timeout": 45}}})
        async with session(config) as ctx:
            plan = await make_plan(ctx)  # the queue does not exist yet
            boto("sqs").create_queue(
                QueueName=f"{env}-jobs", Attributes={"VisibilityTimeout": "5"}
            )  # ...and then it does (another daemon, a person)
            report = await Applier(ctx).apply(plan)
            assert report.ok
            assert changed(await make_plan(ctx)) == {}

    async def test_resources_another_tool_creates_between_plan_and_apply_are_left_alone(
        self, configs: Any, boto: Any
    ):
        env = unique_env()
        config = load(
            configs,
            env,
            {"queues": {"jobs": {"visibility_timeout": 45}}, "streams": {"clicks": {"shards": 1}}},
        )
        terraform = {OWNER_TAG: "terraform"}
        async with session(config) as ctx:
            plan = await make_plan(ctx)  # neither exists yet
            assert {r.action for r in plan.resources} == {"create"}
            sqs, kinesis = boto("sqs"), boto("kinesis")
            url = sqs.create_queue(
                QueueName=f"{env}-jobs", Attributes={"VisibilityTimeout": "5"}, tags=terraform
            )["QueueUrl"]
            kinesis.create_stream(StreamName=f"{env}-clicks", ShardCount=1)
            kinesis.add_tags_to_stream(StreamName=f"{env}-clicks", Tags=terraform)
            report = await Applier(ctx).apply(plan)
        assert not report.ok
        assert {o.resource: o.result for o in report.outcomes} == {
            "queue.jobs": "blocked",
            "stream.clicks": "blocked",
        }
        assert all("tagged managed-by = 'terraform'" in o.detail for o in report.outcomes)
        assert all("appeared after planning" in o.detail for o in report.outcomes)
        assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == terraform
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
        assert attrs["Attributes"]["VisibilityTimeout"] == "5"
        tags = kinesis.list_tags_for_stream(StreamName=f"{env}-clicks")["Tags"]
        assert {t["Key"]: t["Value"] for t in tags} == terraform

    async def test_throttling_is_retried_with_backoff(self, configs: Any, aws_front: AwsFront):
        env = unique_env()
        throttling = "com.amazonaws.dynamodb.v20120810#ThrottlingException"
        aws_front.fail("DescribeTable", throttling, message="Rate exceeded", times=3)
        config = load(
            configs,
            env,
            {"tables": {"t": {"partition_key": "k"}}},
            aws={"endpoint_url": aws_front.url, "max_attempts": 1},
        )
        async with session(config) as ctx:
            plan = await make_plan(ctx)
        throttled = [c for c in aws_front.calls("DescribeTable") if c.error == throttling]
        assert len(throttled) == 3
        assert not plan.failures and [r.action for r in plan.resources] == ["create"]

    async def test_calls_per_service_stay_within_the_concurrency_limit(
        self, configs: Any, aws_front: AwsFront
    ):
        env = unique_env()
        queues = {f"q{i}": {"delay": 1} for i in range(8)}
        aws_front.delay(0.05)
        config = load(
            configs,
            env,
            {"concurrency": 2, "queues": queues},
            aws={"endpoint_url": aws_front.url},
        )
        metrics = Registry()
        async with session(config, metrics=metrics) as ctx:
            await plan_and_apply(ctx)
        assert aws_front.max_in_flight["sqs"] == 2


def test_apply_refuses_without_a_terminal_or_auto_approve(
    configs: Any, capsys: pytest.CaptureFixture[str]
):
    path = write_config(configs, unique_env(), {"queues": {"q": {}}})
    code, _, err = cli(capsys, "apply", "--config", str(path))
    assert code == 1
    assert "pass --auto-approve" in err


@pytest.mark.slow
def test_apply_on_a_terminal_asks_and_a_no_changes_nothing(configs: Any, boto: Any):
    import os
    import pty
    import subprocess
    import sys

    from tests.support.proc import REPO, base_env

    env = unique_env()
    path = write_config(configs, env, {"queues": {"q": {}}})

    def run(answer: bytes) -> tuple[int, str]:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "apply", "--config", str(path)],
            stdin=follower,
            stdout=follower,
            stderr=follower,
            cwd=REPO,
            env=base_env(),
        )
        os.close(follower)
        output = b""
        while b"[y/N]" not in output:
            output += os.read(leader, 4096)
        os.write(leader, answer)
        code = proc.wait(60)
        try:
            while chunk := os.read(leader, 4096):
                output += chunk
        except OSError:
            pass
        os.close(leader)
        return code, output.decode()

    code, out = run(b"n\n")
    assert code == 1 and "Apply cancelled." in out
    assert boto("sqs").list_queues(QueueNamePrefix=env).get("QueueUrls", []) == []
    code, out = run(b"y\n")
    assert code == 0 and "queue.q: created" in out
    assert len(boto("sqs").list_queues(QueueNamePrefix=env)["QueueUrls"]) == 1


def test_shipped_local_config_declares_what_make_run_needs():
    config = load_config(Path("configs/local.toml")).config
    assert config.resources.mode == "enforce"
    kinds = {kind for kind, _, _ in config.resources.declared()}
    assert kinds == {
        "topics", "queues", "streams", "buckets", "log_groups", "alarms", "tables",
        "functions", "distributions", "file_systems",
    }  # fmt: skip
