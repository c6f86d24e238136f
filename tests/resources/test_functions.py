"""Lambda functions on a real moto server: create -> plan clean -> drift -> enforce -> delete,
with what a function brings along (its role, log group, alarms, queue sources, the permission
for its topic), secrets that never show, and code packaged reproducibly (CodeSha256)."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from daemon.config import ConfigError
from daemon.reconcile.plan import make_plan
from daemon.reconcile.render import render_plan
from daemon.resources.function_code import FIXED_TIME, archive, digest
from tests.support.resources import (
    changed,
    cli,
    load,
    plan_and_apply,
    session,
    unique_env,
    write_config,
)

SECRET = "s3cr3t-value-never-shown"


def code_dir(tmp_path: Path) -> Path:
    code = tmp_path / "fn"
    (code / "lib").mkdir(parents=True)
    (code / "app.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
    (code / "lib" / "util.py").write_text("X = 1\n")
    (code / "bootstrap").write_text("#!/bin/sh\n")
    (code / "bootstrap").chmod(0o755)
    return code


def function_resources(path: Path, **fields: Any) -> dict[str, Any]:
    return {
        "mode": "enforce",
        "topics": {
            "readings": {"subscriptions": [{"protocol": "lambda", "endpoint": "ingest"}]},
            "alerts": {},
        },
        "queues": {"jobs": {}},
        "functions": {
            "ingest": {
                "code": str(path),
                "runtime": "python3.12",
                "handler": "app.handler",
                "memory": 256,
                "timeout": 10,
                "environment": {"STAGE": "test", "DB_PASSWORD": "hunter2-pw"},
                "secrets": {"API_TOKEN": SECRET},
                "role": {
                    "statements": [
                        {
                            "Effect": "Allow",
                            "Action": "s3:GetObject",
                            "Resource": "arn:aws:s3:::x/*",
                        }
                    ]
                },
                "reserved_concurrency": 5,
                "log_retention_days": 14,
                "alarm": {"topic": "alerts", "errors": 2},
                "sources": [{"queue": "jobs", "batch_size": 5}],
                **fields,
            }
        },
    }


async def test_a_function_is_created_with_everything_it_brings_and_then_plans_clean(
    configs: Any, boto: Any, tmp_path: Path
):
    env = unique_env("f")
    config = load(configs, env, function_resources(code_dir(tmp_path)))
    async with session(config) as ctx:
        plan, _ = await plan_and_apply(ctx)
        assert "function.ingest" in changed(plan)
        again = await make_plan(ctx)
    assert changed(again) == {}, changed(again)
    name = f"{env}-ingest"
    got = boto("lambda").get_function(FunctionName=name)
    conf = got["Configuration"]
    assert (conf["MemorySize"], conf["Timeout"], conf["Handler"]) == (256, 10, "app.handler")
    assert conf["Environment"]["Variables"]["API_TOKEN"] == SECRET
    assert got["Concurrency"]["ReservedConcurrentExecutions"] == 5
    assert conf["CodeSha256"] == digest(str(tmp_path / "fn")).sha256
    # the role awsd made: under /awsd/, trusted by Lambda, logs + the queue + the declared grant
    role = boto("iam").get_role(RoleName=f"{name}-role")["Role"]
    assert role["Arn"] == conf["Role"] and role["Path"] == "/awsd/"
    inline = boto("iam").get_role_policy(RoleName=f"{name}-role", PolicyName="awsd")
    document = inline["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    sids = [s.get("Sid") for s in document["Statement"]]
    assert sids == ["awsdLogs", "awsdSources", None]
    # its queue source, the permission for its topic, its log group and alarms
    (mapping,) = boto("lambda").list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert mapping["EventSourceArn"].endswith(f":{env}-jobs") and mapping["BatchSize"] == 5
    policy = json.loads(boto("lambda").get_policy(FunctionName=name)["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Sid"] == "awsdSnsReadings"
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"].endswith(f":{env}-readings")
    groups = boto("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")
    assert groups["logGroups"][0]["retentionInDays"] == 14
    alarms = boto("cloudwatch").describe_alarms(AlarmNamePrefix=name)["MetricAlarms"]
    by_metric = {a["MetricName"]: a for a in alarms}
    assert set(by_metric) == {"Errors", "Throttles"}
    assert by_metric["Errors"]["Threshold"] == 2.0
    assert by_metric["Errors"]["Dimensions"] == [{"Name": "FunctionName", "Value": name}]
    # the topic delivers to it
    topic = f"arn:aws:sns:us-east-1:123456789012:{env}-readings"
    subs = boto("sns").list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("lambda", conf["FunctionArn"])]


async def test_function_drift_is_shown_with_secrets_masked_and_enforced(
    configs: Any, boto: Any, tmp_path: Path
):
    env = unique_env("f")
    config = load(configs, env, function_resources(code_dir(tmp_path)))
    name = f"{env}-ingest"
    async with session(config) as ctx:
        await plan_and_apply(ctx)
        lam = boto("lambda")
        lam.update_function_configuration(
            FunctionName=name,
            MemorySize=512,
            Environment={
                "Variables": {"STAGE": "test", "DB_PASSWORD": "changed", "API_TOKEN": "other"}
            },
        )
        for mapping in lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]:
            lam.delete_event_source_mapping(UUID=mapping["UUID"])
        lam.remove_permission(FunctionName=name, StatementId="awsdSnsReadings")
        boto("iam").delete_role_policy(RoleName=f"{name}-role", PolicyName="awsd")
        drift = await make_plan(ctx)
        text = render_plan(drift)
        paths = changed(drift)["function.ingest"]
        assert set(paths) == {
            "memory",
            "environment",
            "role.policy",
            f"sources[arn:aws:sqs:us-east-1:123456789012:{env}-jobs]",
            "permissions.awsdSnsReadings",
        }
        await plan_and_apply(ctx)
        after = await make_plan(ctx)
    assert changed(after) == {}
    for secret in (SECRET, "other", "hunter2-pw", "changed"):
        assert secret not in text and secret not in json.dumps(drift.to_json(), default=str)
    assert '"API_TOKEN": "***:' in text  # masked, and marked changed by a different tag
    assert lam.get_function_configuration(FunctionName=name)["MemorySize"] == 256


async def test_unchanged_code_never_drifts_and_one_changed_byte_updates_it(
    configs: Any, boto: Any, tmp_path: Path
):
    code = code_dir(tmp_path)
    env = unique_env("f")
    config = load(configs, env, function_resources(code))
    async with session(config) as ctx:
        await plan_and_apply(ctx)
        os.utime(code / "app.py", (1, 1))  # touched, not changed
        assert changed(await make_plan(ctx)) == {}
        (code / "app.py").write_text("def handler(event, context):\n    return {'ok': False}\n")
        drift = await make_plan(ctx)
        assert changed(drift) == {"function.ingest": ["code"]}
        await plan_and_apply(ctx)
        assert changed(await make_plan(ctx)) == {}
    sha = boto("lambda").get_function(FunctionName=f"{env}-ingest")["Configuration"]["CodeSha256"]
    assert sha == digest(str(code)).sha256


async def test_a_pruned_function_goes_with_its_role_log_group_and_alarms(
    configs: Any, boto: Any, tmp_path: Path
):
    env = unique_env("f")
    resources = function_resources(code_dir(tmp_path))
    async with session(load(configs, env, resources)) as ctx:
        await plan_and_apply(ctx)
    resources["functions"] = {}
    resources["topics"]["readings"] = {}
    config = load(configs, env, {**resources, "prune": True, "max_deletes": 10})
    async with session(config) as ctx:
        plan, _ = await plan_and_apply(ctx)
    deleted = {r.resource for r in plan.resources if r.action == "delete"}
    name = f"{env}-ingest"
    assert deleted == {
        f"function.{name}",
        f"log_group./aws/lambda/{name}",
        f"alarm.{name}-errors",
        f"alarm.{name}-throttles",
    }
    assert boto("lambda").list_event_source_mappings(FunctionName=name)["EventSourceMappings"] == []
    roles = boto("iam").list_roles(PathPrefix="/awsd/")["Roles"]
    assert f"{name}-role" not in {r["RoleName"] for r in roles}


def test_the_archive_is_the_same_bytes_for_the_same_files_wherever_and_whenever(tmp_path):
    one = code_dir(tmp_path / "one")
    two = code_dir(tmp_path / "two")
    (two / "__pycache__").mkdir()
    (two / "__pycache__" / "app.cpython-312.pyc").write_bytes(b"\x00compiled")
    (two / "stale.pyc").write_bytes(b"\x00")
    os.utime(two / "app.py", (1_000_000, 1_000_000))
    first, second = archive(one), archive(two)
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as zipped:
        infos = zipped.infolist()
    assert [i.filename for i in infos] == ["app.py", "bootstrap", "lib/util.py"]
    assert {i.date_time for i in infos} == {FIXED_TIME}
    modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in infos}
    assert modes == {"app.py": 0o644, "bootstrap": 0o755, "lib/util.py": 0o644}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
    (two / "lib" / "util.py").write_text("X = 2\n")
    assert digest(str(two)).sha256 != digest(str(one)).sha256


def test_code_can_be_a_zip_a_single_file_or_a_python_module(tmp_path):
    single = tmp_path / "handler.py"
    single.write_text("def handler(e, c): pass\n")
    with zipfile.ZipFile(io.BytesIO(archive(single))) as zipped:
        assert zipped.namelist() == ["handler.py"]
    made = tmp_path / "made.zip"
    made.write_bytes(archive(single))
    assert archive(made) == made.read_bytes()
    module = digest("python:daemon.sns.reading_function")
    assert module.size > 0


@pytest.mark.parametrize(
    ("fields", "path", "reason"),
    [
        ({"code": "/nonexistent/fn"}, "resources.functions.ingest.code", "not found"),
        ({"secrets": {"STAGE": "x"}}, "resources.functions.ingest", "both environment"),
        ({"role": "not-an-arn"}, "resources.functions.ingest", "IAM role ARN"),
        ({"sources": [{"queue": "jobs", "batch_size": 100}]}, "sources", "batching_window"),
        ({"alarm": {"topic": "alerts", "period": 90}}, "alarm", "multiple of 60"),
    ],
)
def test_bad_function_declarations_name_the_field(configs, tmp_path, fields, path, reason):
    resources = function_resources(code_dir(tmp_path), **fields)
    with pytest.raises(ConfigError) as caught:
        load(configs, unique_env("f"), resources)
    text = caught.value.render()
    assert path in text and reason in text, text


def test_plan_cli_masks_secrets_and_shows_the_function(configs, capsys, tmp_path):
    env = unique_env("f")
    path = write_config(configs, env, function_resources(code_dir(tmp_path)))
    code, out, _ = cli(capsys, "plan", "--config", str(path))
    assert code == 2
    assert SECRET not in out and "hunter2-pw" not in out
    assert f"+ function.ingest ({env}-ingest)" in out
    assert "+ alarm.ingest.errors" in out and "+ log_group.ingest.logs" in out
