"""The workers, one module each, and the table that turns a config into worker specs.

Adding a worker kind: write `daemon/workers/<kind>.py` with a `specs(config)` function and add it
to `BUILDERS`. The supervisor diffs specs by name and fingerprint on every reload.

`PREPARE` holds coroutines the daemon awaits once at startup, before the first workers start
(the reconciler creates the queues and topics the others use); each bounds its own duration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from daemon.config.models import Config
from daemon.handlers import configured as _handler_needs  # noqa: F401  (outbox and IAM needs)
from daemon.services import Services
from daemon.worker import WorkerSpec, fingerprint
from daemon.workers import (
    custom,
    kinesis_reader,
    outbox,
    probes,
    reconciler,
    sns_publisher,
    sqs_poller,
)

SpecBuilder = Callable[[Config], list[WorkerSpec]]
Preparer = Callable[[Services], Awaitable[None]]

BUILDERS: list[SpecBuilder] = [
    custom.specs,
    kinesis_reader.specs,
    outbox.specs,
    probes.specs,
    reconciler.specs,
    sns_publisher.specs,
    sqs_poller.specs,
]

PREPARE: list[Preparer] = [
    reconciler.prepare,
]


async def prepare_workers(services: Services) -> None:
    """Run every startup preparation, in order (each bounds its own time, none may fail)."""
    for prepare in PREPARE:
        await prepare(services)


def worker_specs(config: Config) -> list[WorkerSpec]:
    specs = [spec for build in BUILDERS for spec in build(config)]
    names = [spec.name for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate worker names: {', '.join(duplicates)}")
    naming = _naming(config)
    return [
        replace(spec, fingerprint=fingerprint(spec.fingerprint, naming[spec.name]))
        if spec.name in naming
        else spec
        for spec in specs
    ]


def _naming(config: Config) -> dict[str, str]:
    """Per worker, how the declared resources it names become AWS names: a reload that renames
    them (`resources.name_template`, a resource's own `name`) must restart exactly those workers,
    whose own sections did not change."""
    from daemon.config.references import references  # noqa: PLC0415

    res = config.resources
    by_user: dict[str, list[tuple[str, str, str]]] = {}
    for ref in references(config):
        if ref.external:
            continue
        declared = res.of_kind(ref.kind).get(ref.value)
        template = (declared.name if declared is not None else None) or res.name_template
        by_user.setdefault(ref.user, []).append((ref.kind, ref.value, template))
    return {
        user: fingerprint({"names": sorted(items), "env": config.env})
        for user, items in by_user.items()
    }
