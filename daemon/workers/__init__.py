"""The workers, one module each, and the table that turns a config into worker specs.

Adding a worker kind: write `daemon/workers/<kind>.py` with a `specs(config)` function and add it
to `BUILDERS`. The supervisor diffs specs by name and fingerprint on every reload.
"""

from __future__ import annotations

from collections.abc import Callable

from daemon.config.models import Config
from daemon.worker import WorkerSpec
from daemon.workers import custom, outbox, sns_publisher, sqs_poller

SpecBuilder = Callable[[Config], list[WorkerSpec]]

BUILDERS: list[SpecBuilder] = [
    custom.specs,
    outbox.specs,
    sns_publisher.specs,
    sqs_poller.specs,
]


def worker_specs(config: Config) -> list[WorkerSpec]:
    specs = [spec for build in BUILDERS for spec in build(config)]
    names = [spec.name for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate worker names: {', '.join(duplicates)}")
    return specs
