"""Which declared resources the parts of awsd use, and the check that each names one.

Workers name the resources they use by logical name (an SQS poller's `queue = "readings"`, the
publisher's `topic = "alerts"`, a Kinesis reader's `stream = "clicks"`), and so do resources
themselves (a topic subscribing a queue, a queue's dead-letter queue, an alarm's SNS action).
Every such use is a `ResourceRef`: resource kinds list theirs (`Kind.references`), each worker
kind its own (`WorkerKind.references`), so that

- `check-config` (and every reload) reports a reference to an undeclared resource, naming the
  field, instead of a worker failing at run time;
- the reconciler knows which worker needs which resource (shown in `awsd plan`, and never
  pruned while referenced);
- the IAM policy generator scopes a worker's permissions to the ARNs it uses.

A reference may also be external: an ARN (`arn:aws:sqs:eu-west-1:123456789012:theirs`), or for
queues a queue URL. External references are never declared, checked for existence or managed.
"""

from __future__ import annotations

from collections.abc import Iterable

from daemon.config.models import Config
from daemon.config.resources import KIND
from daemon.resources.kind import Problem, ResourceRef


def used_by(refs: Iterable[ResourceRef]) -> dict[tuple[str, str], tuple[str, ...]]:
    """Declared resource (kind, logical name) -> the users referring to it, sorted."""
    users: dict[tuple[str, str], set[str]] = {}
    for ref in refs:
        if not ref.external:
            users.setdefault((ref.kind, ref.value), set()).add(ref.user)
    return {key: tuple(sorted(names)) for key, names in users.items()}


def reference_problems(config: Config, refs: Iterable[ResourceRef]) -> list[Problem]:
    """A reference to something undeclared, or an ARN of the wrong service."""
    problems = []
    for ref in refs:
        kind = KIND[ref.kind]
        declared = config.resources.of_kind(ref.kind)
        if ref.external:
            service = kind.arn_namespace
            if ref.value.startswith("arn:") and ref.value.split(":")[2:3] != [service]:
                problems.append((ref.path, f"{ref.value!r} is not an ARN of {service}"))
            continue
        if ref.value not in declared:
            known = ", ".join(sorted(declared)) or "none"
            problems.append(
                (
                    ref.path,
                    f"names {kind.singular} {ref.value!r}, which is not declared under "
                    f"[resources.{ref.kind}] (declared: {known}); use an ARN for a "
                    f"{kind.singular} awsd does not manage",
                )
            )
    return problems
