"""The least-privilege IAM policy of a config: every part of awsd says what it calls, on what.

`awsd iam-policy` prints one policy document with every action the configured workers, exporters
and the reconciler need, each scoped to the ARNs of the resources they use (the way Chalice
generates a Lambda's policy from the calls it makes). Nothing is guessed from a list of
"services used": a component that is not configured contributes nothing.

A contributor is a function `(config, scope) -> list[Grant]`: each worker kind has one
(`WorkerKind.grants`), and so do the process-lifetime services that call AWS (metrics export,
log shipping); `daemon.worker.Catalog.policy` gathers them::

    def grants(config: Config, scope: Scope) -> list[Grant]:
        return [
            Grant(
                f"sqs:{name}",
                ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                 "sqs:GetQueueAttributes", "sqs:GetQueueUrl"),
                (scope.arn_of("queues", poller.queue),),
            )
            for name, poller in config.sqs.items()
        ]

`scope.arn_of(kind, reference)` resolves a declared resource's logical name (or passes an ARN
through); the account is `*` unless `--account` is given, the region is the config's or `*`.
Use `("*",)` only for actions AWS cannot scope (`sqs:ListQueues`, SMS to a phone number), and
narrow those with a condition where IAM has one (`cloudwatch:PutMetricData` on `*` only for
`cloudwatch:namespace` = the configured namespace). What goes out through the outbox is granted
by `daemon.outbox.senders.destination_grants(kind, component, target, scope)`, the one place that
knows what each sender calls.

`action_for(service, operation)` maps a botocore operation to its IAM action (they differ for
S3 and for batch calls); the tests use it to check that every call a component made is covered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from daemon.config.models import Config
from daemon.core.targets import Names

Scope = Names
"""What a contributor gets to resolve references to ARNs (see `daemon.resources.naming`)."""

MANAGED_POLICY_LIMIT = 6144  # characters, whitespace excluded, of a managed policy


@dataclass(frozen=True, slots=True)
class Grant:
    """Actions one component needs on some resources."""

    component: str
    """Who needs it: `reconciler`, `sqs:orders`, `metrics`..."""
    actions: tuple[str, ...]
    resources: tuple[str, ...] = ("*",)
    sid: str = ""
    """Statement id to use (letters and digits); default: derived from the component."""
    condition: tuple[tuple[str, str, str], ...] = ()
    """(operator, key, value) triples, all of which must hold: `("StringEquals",
    "cloudwatch:namespace", "awsd")`."""


Contributor = Callable[[Config, Scope], list[Grant]]
"""What one component needs for a config (see the module docstring)."""

AWS_SERVICES = frozenset({"sns", "sqs", "kinesis", "s3", "dynamodb", "cloudwatch", "logs"})
"""IAM action prefixes of the services workers call all the time (their clients are built at
startup, while the local endpoint boots); others are built on first use."""

CLIENT_OF = {"elasticloadbalancing": "elbv2", "elasticfilesystem": "efs"}
"""botocore client names where they differ from the IAM action prefix."""


def grants(config: Config, contributors: Iterable[Contributor], scope: Scope) -> list[Grant]:
    return [grant for contribute in contributors for grant in contribute(config, scope)]


def services_granted(config: Config, contributors: Iterable[Contributor]) -> set[str]:
    """The AWS services a config calls (botocore client names), from what it is granted."""
    scope = Names(config, region=config.aws.region or "*", account="*")
    found = {
        action.split(":", 1)[0]
        for grant in grants(config, contributors, scope)
        for action in grant.actions
    }
    return {CLIENT_OF.get(prefix, prefix) for prefix in found & AWS_SERVICES}


def policy(
    config: Config,
    contributors: Iterable[Contributor],
    *,
    account: str = "*",
    region: str | None = None,
) -> dict[str, Any]:
    """The policy document: one statement per set of resources (and condition), actions sorted
    and merged. An action granted on any resource without a condition is left out of the
    scoped statements (they would add nothing)."""
    scope = Names(config, region=region or config.aws.region or "*", account=account)
    merged: dict[_Key, tuple[set[str], set[str]]] = {}
    for grant in grants(config, contributors, scope):
        key = (tuple(sorted(set(grant.resources))), tuple(sorted(set(grant.condition))))
        actions, names = merged.setdefault(key, (set(), set()))
        actions.update(grant.actions)
        names.add(grant.sid or grant.component)
    anywhere = merged.get((("*",), ()), (set(), set()))[0]
    statements = []
    sids: set[str] = set()
    for (resources, condition), (granted, names) in sorted(merged.items(), key=_statement_order):
        unscoped = resources == ("*",) and not condition
        actions = granted if unscoped else granted - anywhere
        if not actions:
            continue
        statement: dict[str, Any] = {
            "Sid": _sid({"any resource"} if unscoped else names, sids),
            "Effect": "Allow",
            "Action": sorted(actions),
            "Resource": resources[0] if len(resources) == 1 else list(resources),
        }
        if condition:
            statement["Condition"] = _condition_block(condition)
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


_Key = tuple[tuple[str, ...], tuple[tuple[str, str, str], ...]]


def _condition_block(condition: tuple[tuple[str, str, str], ...]) -> dict[str, dict[str, str]]:
    block: dict[str, dict[str, str]] = {}
    for operator, key, value in condition:
        block.setdefault(operator, {})[key] = value
    return block


def _statement_order(item: tuple[_Key, tuple[set[str], set[str]]]) -> tuple[bool, str, str]:
    (resources, condition), (_, names) = item
    return (resources != ("*",) or bool(condition), ",".join(sorted(names)), ",".join(resources))


def _sid(components: set[str], taken: set[str]) -> str:
    base = (
        "".join(
            part[0].upper() + part[1:]
            for component in sorted(components)
            for part in re.split(r"[^A-Za-z0-9]+", component)
            if part
        )[:60]
        or "Awsd"
    )
    sid, n = base, 2
    while sid in taken:
        sid, n = f"{base}{n}", n + 1
    taken.add(sid)
    return sid


def policy_size(document: dict[str, Any]) -> int:
    """Characters IAM counts against its size limits (whitespace excluded)."""
    import json  # noqa: PLC0415

    return len(re.sub(r"\s+", "", json.dumps(document)))


# --- botocore operation -> IAM action ------------------------------------------------------------

_PREFIX = {
    "logs": "logs",
    "cloudwatch": "cloudwatch",
    "monitoring": "cloudwatch",
    "efs": "elasticfilesystem",
}

_ACTIONS: dict[tuple[str, str], str | None] = {
    ("sts", "GetCallerIdentity"): None,  # needs no permission
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListBuckets"): "s3:ListAllMyBuckets",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "DeleteObjects"): "s3:DeleteObject",
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("s3", "AbortMultipartUpload"): "s3:AbortMultipartUpload",
    ("s3", "GetBucketEncryption"): "s3:GetEncryptionConfiguration",
    ("s3", "PutBucketEncryption"): "s3:PutEncryptionConfiguration",
    ("s3", "DeleteBucketEncryption"): "s3:PutEncryptionConfiguration",
    ("s3", "GetPublicAccessBlock"): "s3:GetBucketPublicAccessBlock",
    ("s3", "PutPublicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("s3", "DeletePublicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("s3", "GetBucketCors"): "s3:GetBucketCORS",
    ("s3", "PutBucketCors"): "s3:PutBucketCORS",
    ("s3", "DeleteBucketCors"): "s3:PutBucketCORS",
    ("s3", "GetBucketLifecycleConfiguration"): "s3:GetLifecycleConfiguration",
    ("s3", "PutBucketLifecycleConfiguration"): "s3:PutLifecycleConfiguration",
    ("s3", "DeleteBucketLifecycle"): "s3:PutLifecycleConfiguration",
    ("s3", "DeleteBucketTagging"): "s3:PutBucketTagging",
    ("s3", "DeleteBucketPolicy"): "s3:DeleteBucketPolicy",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("sns", "PublishBatch"): "sns:Publish",
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("cloudfront", "CreateDistributionWithTags"): "cloudfront:CreateDistribution",
}


def action_for(service: str, operation: str) -> str | None:
    """The IAM action a botocore call needs (None: no permission needed)."""
    if (service, operation) in _ACTIONS:
        return _ACTIONS[(service, operation)]
    return f"{_PREFIX.get(service, service)}:{operation}"


def operations_for(action: str) -> list[tuple[str, str]]:
    """The botocore (service, operation) pairs named differently from `action` that need it
    (`sqs:DeleteMessage` <- `DeleteMessageBatch`): the names some emulators check instead."""
    return [key for key, mapped in _ACTIONS.items() if mapped == action]


def allows(
    document: dict[str, Any],
    action: str,
    resource: str | None = None,
    context: dict[str, str] | None = None,
) -> bool:
    """Whether the policy allows `action` on `resource` (on some resource when None), with
    wildcards read the way IAM reads them. A statement with a condition applies only when
    `context` holds a matching value for each of its keys (`StringEquals`, `StringLike`)."""
    for statement in document.get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if (
            any(_matches(a, action, ignore_case=True) for a in actions)
            and (resource is None or any(_matches(r, resource) for r in resources))
            and _conditions_hold(statement.get("Condition", {}), context or {})
        ):
            return True
    return False


def _conditions_hold(block: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    for operator, tests in block.items():
        if operator not in ("StringEquals", "StringLike"):
            return False  # not understood here: never assume it holds
        for key, expected in tests.items():
            values = [expected] if isinstance(expected, str) else list(expected)
            actual = context.get(key)
            if actual is None:
                return False
            if operator == "StringEquals" and actual not in values:
                return False
            if operator == "StringLike" and not any(_matches(v, actual) for v in values):
                return False
    return True


def _matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcard matching: `*` any run of characters, `?` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.IGNORECASE if ignore_case else 0
    return re.fullmatch(regex, value, flags=flags) is not None
