"""What configured handlers need from the rest of the daemon, whatever their source.

Handlers are source-agnostic (SQS pollers and Kinesis readers share them), so what a handler
needs is said once, here, and each worker kind that runs handlers adds it to its own needs: the
outbox delivery worker must run when a `forward` handler sends to AWS, and the IAM policy must
let it publish, send or put where it forwards.
"""

from __future__ import annotations

from collections.abc import Iterable

from daemon.config.handlers import ForwardHandlerConfig, HandlerUse
from daemon.core.iam import Grant, Scope
from daemon.outbox.senders import destination_grants


def sends(uses: Iterable[HandlerUse]) -> bool:
    """Whether any of the handlers forwards through the outbox."""
    return any(
        isinstance(handler, ForwardHandlerConfig) and handler.url is None for _, _, handler in uses
    )


def grants(uses: Iterable[HandlerUse], scope: Scope) -> list[Grant]:
    """What the handlers' `forward`s need: each to its destination, granted to its worker."""
    found = []
    for _, worker, handler in uses:
        if isinstance(handler, ForwardHandlerConfig) and handler.url is None:
            to, target = handler.destination
            found += destination_grants(to, worker, [target], scope)
    return found
