"""Which declared resources each part of awsd uses: the registry of resource references.

Workers name the resources they use by logical name (an SQS poller's `queue = "readings"`, the
publisher's `topic = "alerts"`, a Kinesis reader's `stream = "clicks"`), and so do resources
themselves (a topic subscribing a queue, a queue's dead-letter queue, an alarm's SNS action).
Every such reference is registered here, so that:

- `check-config` (and every reload) reports a reference to an undeclared resource, naming the
  field, instead of a worker failing at run time;
- the reconciler knows which worker needs which resource (shown in `awsd plan`, and never
  pruned while referenced);
- the IAM policy generator (`daemon/core/iam.py`) scopes a worker's permissions to the ARNs it uses.

A reference may also be external: an ARN (`arn:aws:sqs:eu-west-1:123456789012:theirs`), or for
queues a queue URL. External references are never declared, checked for existence or managed.

How a worker registers its references (in its config module, next to its model)::

    from daemon.config.references import REFERENCES, ResourceRef

    def _references(config: Config) -> list[ResourceRef]:
        return [
            ResourceRef("queues", poller.queue, f"sqs.{name}.queue", user=f"sqs:{name}")
            for name, poller in config.sqs.items()
        ]

    REFERENCES.append(_references)

The function gets the validated `Config`; `path` is the dotted field path shown in errors, and
`user` is the worker's name as the supervisor knows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from daemon.config.loader import CROSS_CHECKS
from daemon.config.models import Config
from daemon.config.resources import (
    NAME_RULES,
    SINGULAR,
    QueueConfig,
    ResourceKind,
    TopicConfig,
    check_template,
)

_ARN_SERVICE: dict[ResourceKind, str] = {
    "topics": "sns",
    "queues": "sqs",
    "streams": "kinesis",
    "buckets": "s3",
    "log_groups": "logs",
    "alarms": "cloudwatch",
    "tables": "dynamodb",
}


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """One use of a resource by a worker or by another resource."""

    kind: ResourceKind
    value: str
    """The logical name of a declared resource, or an ARN (or queue URL) of an external one."""
    path: str
    """Dotted config path of the field holding the reference, for error messages."""
    user: str
    """Who uses it: a worker name (`sqs:orders`) or a resource (`topic.readings`)."""

    @property
    def external(self) -> bool:
        return is_external(self.kind, self.value)


ReferenceSource = Callable[[Config], list[ResourceRef]]
"""A function listing the references one capability makes in a config."""

REFERENCES: list[ReferenceSource] = []
"""Every registered reference source (see the module docstring)."""


def is_external(kind: ResourceKind, value: str) -> bool:
    """An ARN (or an SQS queue URL, or for buckets a name awsd does not declare) is external."""
    return value.startswith("arn:") or (
        kind == "queues" and value.startswith(("https://", "http://"))
    )


def references(config: Config) -> list[ResourceRef]:
    """Every reference in the config, from every registered source."""
    return [ref for source in REFERENCES for ref in source(config)]


def used_by(config: Config) -> dict[tuple[ResourceKind, str], tuple[str, ...]]:
    """Declared resource (kind, logical name) -> the users referring to it, sorted."""
    users: dict[tuple[ResourceKind, str], set[str]] = {}
    for ref in references(config):
        if not ref.external:
            users.setdefault((ref.kind, ref.value), set()).add(ref.user)
    return {key: tuple(sorted(names)) for key, names in users.items()}


def _resource_references(config: Config) -> list[ResourceRef]:
    """References between declared resources."""
    refs: list[ResourceRef] = []
    res = config.resources
    for name, topic in res.topics.items():
        for i, sub in enumerate(topic.subscriptions):
            base = f"resources.topics.{name}.subscriptions[{i}]"
            if sub.protocol == "sqs":
                refs.append(
                    ResourceRef("queues", sub.endpoint, f"{base}.endpoint", f"topic.{name}")
                )
            if sub.dead_letter_queue:
                refs.append(
                    ResourceRef(
                        "queues",
                        sub.dead_letter_queue,
                        f"{base}.dead_letter_queue",
                        f"topic.{name}",
                    )
                )
    for name, queue in res.queues.items():
        if queue.redrive:
            path = f"resources.queues.{name}.redrive.dead_letter_queue"
            refs.append(
                ResourceRef("queues", queue.redrive.dead_letter_queue, path, f"queue.{name}")
            )
    for name, bucket in res.buckets.items():
        if bucket.logging and bucket.logging.target_bucket in res.buckets:
            path = f"resources.buckets.{name}.logging.target_bucket"
            refs.append(
                ResourceRef("buckets", bucket.logging.target_bucket, path, f"bucket.{name}")
            )
    if res.lease_table:
        refs.append(ResourceRef("tables", res.lease_table, "resources.lease_table", "reconciler"))
    for name, alarm in res.alarms.items():
        for field in ("alarm_actions", "ok_actions", "insufficient_data_actions"):
            for i, target in enumerate(getattr(alarm, field)):
                path = f"resources.alarms.{name}.{field}[{i}]"
                refs.append(ResourceRef("topics", target, path, f"alarm.{name}"))
    return refs


REFERENCES.append(_resource_references)


def _check_references(config: Config) -> list[tuple[str, str]]:
    problems = []
    for ref in references(config):
        declared = config.resources.of_kind(ref.kind)
        if ref.external:
            service = _ARN_SERVICE[ref.kind]
            if ref.value.startswith("arn:") and ref.value.split(":")[2:3] != [service]:
                problems.append((ref.path, f"{ref.value!r} is not an ARN of {service}"))
            continue
        if ref.value not in declared:
            known = ", ".join(sorted(declared)) or "none"
            problems.append(
                (
                    ref.path,
                    f"names {SINGULAR[ref.kind]} {ref.value!r}, which is not declared under "
                    f"[resources.{ref.kind}] (declared: {known}); use an ARN for a "
                    f"{SINGULAR[ref.kind]} awsd does not manage",
                )
            )
    return problems


def _check_names(config: Config) -> list[tuple[str, str]]:
    """Physical names AWS would refuse, and two declarations landing on one AWS name."""
    problems: list[tuple[str, str]] = []
    res = config.resources
    for kind, logical, spec in res.declared():
        path = f"resources.{kind}.{logical}"
        if spec.name is not None:
            try:
                check_template(spec.name)
            except ValueError as exc:
                problems.append((f"{path}.name", str(exc)))
                continue
        physical = res.physical_name(
            kind, logical, env=config.env, region="us-east-1", account="123456789012"
        )
        rule = NAME_RULES[kind]
        if not rule.pattern.match(physical):
            where = f"{path}.name" if spec.name else path
            problems.append(
                (
                    where,
                    f"AWS name {physical!r} is not a valid {SINGULAR[kind]} name: {rule.help}"
                    + ("" if spec.name else " (set `name`, or change resources.name_template)"),
                )
            )
        fifo = isinstance(spec, QueueConfig | TopicConfig) and spec.fifo
        if not fifo and kind in ("queues", "topics") and physical.endswith(".fifo"):
            problems.append((path, "the name ends in .fifo but fifo is not set"))
    for kind in NAME_RULES:
        seen: dict[str, str] = {}
        for logical in res.of_kind(kind):
            physical = res.physical_name(kind, logical, env=config.env)
            if physical in seen:
                problems.append(
                    (
                        f"resources.{kind}.{logical}",
                        f"has the same AWS name {physical!r} as resources.{kind}.{seen[physical]}",
                    )
                )
            seen.setdefault(physical, logical)
    return problems


def _check_fifo_pairs(config: Config) -> list[tuple[str, str]]:
    """SNS delivers a FIFO topic only to FIFO queues, and a FIFO queue only redrives to one."""
    problems = []
    res = config.resources
    for name, topic in res.topics.items():
        for i, sub in enumerate(topic.subscriptions):
            queue = res.queues.get(sub.endpoint) if sub.protocol == "sqs" else None
            if queue is not None and queue.fifo != topic.fifo:
                problems.append(
                    (
                        f"resources.topics.{name}.subscriptions[{i}].endpoint",
                        "a FIFO topic can only deliver to FIFO queues, and a standard topic "
                        "only to standard queues",
                    )
                )
    for name, queue in res.queues.items():
        dlq = res.queues.get(queue.redrive.dead_letter_queue) if queue.redrive else None
        if dlq is not None and dlq.fifo != queue.fifo:
            problems.append(
                (
                    f"resources.queues.{name}.redrive.dead_letter_queue",
                    "the dead-letter queue of a FIFO queue must be FIFO too (and standard for "
                    "a standard queue)",
                )
            )
        if queue.redrive and queue.redrive.dead_letter_queue == name:
            problems.append(
                (
                    f"resources.queues.{name}.redrive.dead_letter_queue",
                    "a queue cannot be its own DLQ",
                )
            )
    for name, bucket in res.buckets.items():
        if bucket.logging and bucket.logging.target_bucket == name:
            problems.append(
                (
                    f"resources.buckets.{name}.logging.target_bucket",
                    "a bucket should not log to itself (every log write makes another log)",
                )
            )
    return problems


def lease_table_problem(config: Config, ref: str | None) -> str | None:
    """Why a declared table cannot hold leases: it must have the key daemon.core.leases writes
    (`lease_key`, a string) and no sort key. None when it can, or is not declared (an external
    table is not checked)."""
    table = config.resources.tables.get(ref or "")
    if table is None:
        return None
    if (table.partition_key, table.partition_key_type, table.sort_key) == ("lease_key", "S", None):
        return None
    has = f"partition_key = {table.partition_key!r} ({table.partition_key_type})" + (
        f" and sort_key = {table.sort_key!r}" if table.sort_key else ""
    )
    return (
        f'a lease table needs partition_key = "lease_key" (a string) and no sort key; it has {has}'
    )


def _check_lease_table(config: Config) -> list[tuple[str, str]]:
    """The reconciler's lease table (Kinesis readers check theirs the same way)."""
    name = config.resources.lease_table
    problem = lease_table_problem(config, name)
    return [(f"resources.tables.{name}.partition_key", problem)] if problem else []


CROSS_CHECKS.extend([_check_references, _check_names, _check_fifo_pairs, _check_lease_table])
