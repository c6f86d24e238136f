"""Golden files of `awsd plan` output (text and JSON).

The files live in tests/golden/. After an intended change of the output, regenerate them and
review the diff:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/reconcile/test_plan_golden.py

Plans read from moto use a fresh environment name (the moto server is shared by the session),
replaced by `g00000000` (same length, so alignment is unchanged) before comparing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from daemon.reconcile.plan import Plan, PlanItem, ReadFailure, ResourcePlan, make_plan
from daemon.reconcile.render import render_plan
from tests.support.resources import (
    demo_resources,
    inject_the_four_drifts,
    load,
    plan_and_apply,
    session,
    unique_env,
)

GOLDEN = Path(__file__).parent / "golden"
PLACEHOLDER = "g00000000"


def check(name: str, text: str, env: str | None = None) -> None:
    if env is not None:
        assert len(env) == len(PLACEHOLDER)
        text = text.replace(env, PLACEHOLDER)
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing: UPDATE_GOLDEN=1 pytest {__file__}"
    expected = path.read_text()
    assert text == expected, f"plan output changed; if intended: UPDATE_GOLDEN=1 pytest {__file__}"


async def test_plan_of_an_empty_account(configs: Any):
    env = unique_env("g")
    async with session(load(configs, env, demo_resources())) as ctx:
        plan = await make_plan(ctx)
    check("plan_create.txt", render_plan(plan), env)


async def test_plan_after_drift(configs: Any, boto: Any):
    env = unique_env("g")
    async with session(load(configs, env, demo_resources())) as ctx:
        await plan_and_apply(ctx)
        inject_the_four_drifts(boto, env)
        plan = await make_plan(ctx)
    check("plan_drift.txt", render_plan(plan), env)
    check("plan_drift.json", json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n", env)


def test_plan_with_every_symbol():
    def item(resource: str, action: Any, path: str, expected: Any, actual: Any, **kw: Any) -> Any:
        return PlanItem(resource, action, path, expected, actual, **kw)

    old_policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:Get*"}]}
    new_policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:Get*"}]}
    resources = (
        ResourcePlan(
            "table.leases", "tables", "leases", "prod-leases",
            "arn:aws:dynamodb:eu-west-1:123456789012:table/prod-leases", "replace",
            (item("table.leases", "replace", "partition_key", "key", "id",
                  forces_replacement=True),),
            used_by=("kinesis:clicks",),
        ),
        ResourcePlan(
            "queue.jobs", "queues", "jobs", "prod-jobs",
            "arn:aws:sqs:eu-west-1:123456789012:prod-jobs", "update",
            (
                item("queue.jobs", "update", "tags.managed-by", "awsd", None),
                item("queue.jobs", "update", "visibility_timeout", 60, 30),
            ),
            note="adopting: it exists without awsd's ownership tags, which will be added",
        ),
        ResourcePlan(
            "bucket.site", "buckets", "site", "prod-site", "arn:aws:s3:::prod-site", "update",
            (item("bucket.site", "update", "policy", new_policy, old_policy),),
        ),
        ResourcePlan(
            "queue.shared", "queues", "shared", "prod-shared",
            "arn:aws:sqs:eu-west-1:123456789012:prod-shared", "update",
            (item("queue.shared", "update", "delay", 3, 0),),
            blocked="belongs to awsd environment 'dev' (this is 'prod')",
        ),
        ResourcePlan(
            "queue.prod-old", "queues", "", "prod-old",
            "arn:aws:sqs:eu-west-1:123456789012:prod-old", "delete",
            (item("queue.prod-old", "delete", "", None, "arn:aws:sqs:...:prod-old"),),
            note="owned by awsd (env prod) and no longer declared",
        ),
        ResourcePlan(
            "topic.alerts", "topics", "alerts", "prod-alerts",
            "arn:aws:sns:eu-west-1:123456789012:prod-alerts", "no-op",
        ),
    )  # fmt: skip
    failures = (
        ReadFailure(
            "stream.clicks",
            "AccessDeniedException: User is not authorized to perform kinesis:DescribeStream"
            "Summary (the credentials lack this permission; `awsd iam-policy` prints what awsd "
            "needs)",
        ),
    )
    plan = Plan("prod", "eu-west-1", "123456789012", resources, failures)
    assert plan.exit_code == 1
    check("plan_mixed.txt", render_plan(plan))
