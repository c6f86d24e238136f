"""What the configured handlers need from the rest of the daemon, whatever their source.

Handlers are source-agnostic (SQS pollers and Kinesis readers share them), so what a handler
needs is declared once, here: the outbox delivery worker must run when a `forward` handler sends
to AWS, and the IAM policy must let it publish, send or put where it forwards. Imported by
`daemon.workers`, which registers these with the outbox worker and the policy generator.
"""

from __future__ import annotations

from daemon.config.handlers import ForwardHandlerConfig, configured_handlers
from daemon.config.models import Config
from daemon.core.iam import CONTRIBUTORS, Grant, Scope
from daemon.handlers.forward import forward_grants
from daemon.workers.outbox import OUTBOX_USERS


def forwards_through_outbox(config: Config) -> bool:
    return any(
        isinstance(handler, ForwardHandlerConfig) and handler.url is None
        for _, _, handler in configured_handlers(config)
    )


def handler_grants(config: Config, scope: Scope) -> list[Grant]:
    return [
        grant
        for _, worker, handler in configured_handlers(config)
        for grant in forward_grants(handler, worker, scope)
    ]


OUTBOX_USERS.append(forwards_through_outbox)
CONTRIBUTORS.append(handler_grants)
