"""The reconciler worker (`[resources]`, worker `reconciler`): keeps the declared AWS resources
as declared, pass after pass.

The loop is `daemon.reconcile.loop.ReconcilerWorker` (the passes in `daemon.reconcile.passes`);
this module says what the kind contributes: its IAM grants, and the startup pass that creates
the queues and topics the other workers use before they start.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from daemon.config.models import Config
from daemon.reconcile.iam import reconciler_grants
from daemon.worker import Worker, WorkerKind, WorkerSpec, fingerprint

if TYPE_CHECKING:
    from daemon.services import Services

NAME = "reconciler"


def _build(config: Config, services: Services) -> Worker:
    from daemon.reconcile.loop import ReconcilerWorker  # noqa: PLC0415 - loaded when used

    return ReconcilerWorker(config, services)


async def prepare(services: Services) -> None:
    from daemon.reconcile.loop import prepare as startup_pass  # noqa: PLC0415

    await startup_pass(services)


def specs(config: Config) -> list[WorkerSpec]:
    return [
        WorkerSpec(
            name=NAME,
            kind=NAME,
            fingerprint=fingerprint(config.resources, config.aws, config.env),
            build=partial(_build, config),
        )
    ]


def _uses(config: Config) -> bool:
    return config.resources.mode != "off" and bool(config.resources.declared())


KIND = WorkerKind(
    name=NAME,
    section="resources",
    uses=_uses,
    specs=specs,
    grants=reconciler_grants,
    prepare=prepare,
)
