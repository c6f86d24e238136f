"""The workers, one module per kind, each exporting its `WorkerKind`; and the catalog of them.

Adding a worker kind: write `daemon/workers/<kind>.py` with its `KIND` (config section, whether a
config uses it, its specs, references, checks, IAM grants, outbox use, startup preparation;
see `daemon.worker.WorkerKind`) and add it to `KINDS`. A worker module is a thin adapter: the
engine lives in its capability's package and is imported only when a worker is built, so a
config without Kinesis never loads the Kinesis reader (memory and start-up time on a Pi).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from daemon.config.loader import LoadedConfig
from daemon.telemetry.grants import log_grants, metrics_grants
from daemon.worker import Catalog
from daemon.workers import (
    custom,
    kinesis_reader,
    outbox,
    probes,
    reconciler,
    sns_publisher,
    sqs_poller,
)

KINDS = (
    reconciler.KIND,
    sns_publisher.KIND,
    sqs_poller.KIND,
    kinesis_reader.KIND,
    probes.KIND,
    custom.KIND,
)
"""Every worker kind but the outbox's delivery worker, which runs when any of them sends."""

CATALOG = Catalog(
    (*KINDS, outbox.kind(sends=lambda config: any(k.sends(config) for k in KINDS))),
    service_grants=(metrics_grants, log_grants),
)
"""What the daemon and the command line know of the workers."""


def load_config(path: str | Path, environ: Mapping[str, str] = os.environ) -> LoadedConfig:
    """A config loaded and checked with everything the workers name and check."""
    return CATALOG.load(path, environ)
