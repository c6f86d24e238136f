"""The workers, one module each, and the table that turns a config into worker specs.

Adding a worker kind: write `daemon/workers/<kind>.py` with a `specs(config)` function and add it
to `WORKERS` with a test telling whether a config has anything for it. The supervisor diffs specs
by name and fingerprint on every reload.

A worker module is imported only for a config that uses it (`modules_for`): a config without
Kinesis never loads the Kinesis reader, its leases and checkpoints (memory and start-up time on a
Pi). The test must cover everything the module registers when imported: its workers, its IAM
grants (`daemon.core.iam.CONTRIBUTORS`) and its outbox use (`workers.outbox.OUTBOX_USERS`).

`PREPARE` names the modules whose `prepare(services)` the daemon runs once at startup while the
workers wait for it (the reconciler creates the queues and topics the others use); each bounds its
own duration.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType

from daemon.config.models import Config
from daemon.handlers import configured as _handler_needs  # noqa: F401  (outbox and IAM needs)
from daemon.services import Services
from daemon.worker import WorkerSpec, fingerprint

WORKERS: dict[str, Callable[[Config], bool]] = {
    "custom": lambda config: bool(config.custom),
    "kinesis_reader": lambda config: bool(config.kinesis.readers),
    "outbox": lambda _config: True,  # it also delivers what an earlier run left in the file
    "probes": lambda config: bool(config.probes.endpoints),
    "reconciler": lambda config: (
        config.resources.mode != "off" and bool(config.resources.declared())
    ),
    "sns_publisher": lambda config: config.sns is not None,
    "sqs_poller": lambda config: bool(config.sqs),
}
"""Worker modules under `daemon.workers`, each with whether a config uses it."""

PREPARE: list[str] = ["reconciler"]


def modules_for(config: Config) -> list[ModuleType]:
    """The worker modules `config` uses, imported (which registers their grants and needs)."""
    return [
        importlib.import_module(f"daemon.workers.{name}")
        for name, uses in WORKERS.items()
        if uses(config)
    ]


async def prepare_workers(services: Services) -> None:
    """Run every startup preparation, in order (each bounds its own time, none may fail)."""
    used = {module.__name__.rsplit(".", 1)[1]: module for module in modules_for(services.config)}
    for name in PREPARE:
        if name in used:
            await used[name].prepare(services)


def worker_specs(config: Config) -> list[WorkerSpec]:
    specs: list[WorkerSpec] = [
        spec for module in modules_for(config) for spec in module.specs(config)
    ]
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
