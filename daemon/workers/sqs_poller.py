"""SQS pollers: one worker per `[sqs.<name>]` (worker `sqs:<name>`), each polling one queue.

The engine is `daemon.sqs.poller.SqsPoller`; this module says what the kind contributes: the
queue and the handler's destinations it names, the IAM actions it needs, its outbox use.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from daemon.config.handlers import HandlerUse, handler_problems, handler_references
from daemon.config.messaging import SqsPollerConfig
from daemon.config.models import Config
from daemon.core.iam import Grant, Scope
from daemon.handlers import needs
from daemon.resources.kind import Problem, ResourceRef
from daemon.worker import Worker, WorkerKind, WorkerSpec, fingerprint

if TYPE_CHECKING:
    from daemon.services import Services

ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
)


def _build(name: str, cfg: SqsPollerConfig, services: Services) -> Worker:
    from daemon.sqs.poller import SqsPoller  # noqa: PLC0415 - loaded when a config polls

    return SqsPoller(name, cfg, services)


def specs(config: Config) -> list[WorkerSpec]:
    return [
        WorkerSpec(
            name=f"sqs:{name}",
            kind="sqs",
            fingerprint=fingerprint(cfg, config.aws),
            build=partial(_build, name, cfg),
        )
        for name, cfg in config.sqs.items()
    ]


def handlers(config: Config) -> list[HandlerUse]:
    return [(f"sqs.{name}.handler", f"sqs:{name}", p.handler) for name, p in config.sqs.items()]


def references(config: Config) -> list[ResourceRef]:
    """The queues polled, and where their handlers forward to."""
    polled = [
        ResourceRef("queues", poller.queue, f"sqs.{name}.queue", f"sqs:{name}")
        for name, poller in config.sqs.items()
    ]
    return polled + handler_references(handlers(config))


def checks(config: Config) -> list[Problem]:
    return handler_problems(handlers(config))


def grants(config: Config, scope: Scope) -> list[Grant]:
    polled = [
        Grant(f"sqs:{name}", ACTIONS, (scope.arn_of("queues", poller.queue),))
        for name, poller in config.sqs.items()
    ]
    return polled + needs.grants(handlers(config), scope)


KIND = WorkerKind(
    name="sqs",
    section="sqs",
    uses=lambda config: bool(config.sqs),
    specs=specs,
    references=references,
    checks=(checks,),
    grants=grants,
    sends=lambda config: needs.sends(handlers(config)),
)
