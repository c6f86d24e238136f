"""The senders, one module per message kind. Adding a kind: write `<kind>.py` with a `Sender`
subclass (with its `iam_actions` and `target_kind`) and add it to `SENDERS`.

`destination_grants` is the one place that turns "this component sends messages of this kind to
this target" into IAM grants: the publisher, forward handlers, probe alerts and custom workers
that send through the outbox all use it, so a sender's needs are written once, on the sender.
"""

from __future__ import annotations

from daemon.core.iam import Grant, Scope
from daemon.outbox.sender import Sender
from daemon.outbox.senders.kinesis import KinesisSender
from daemon.outbox.senders.lambda_ import LambdaSender
from daemon.outbox.senders.sms import SmsSender
from daemon.outbox.senders.sns import SnsSender
from daemon.outbox.senders.sqs import SqsSender

SENDERS: dict[str, type[Sender]] = {
    KinesisSender.kind: KinesisSender,
    SqsSender.kind: SqsSender,
    SnsSender.kind: SnsSender,
    SmsSender.kind: SmsSender,
    LambdaSender.kind: LambdaSender,
}


def destination_grants(kind: str, component: str, targets: list[str], scope: Scope) -> list[Grant]:
    """What `component` needs to send outbox messages of `kind` to `targets` (logical names of
    declared resources, or ARNs/URLs; phone numbers for `sms`, which IAM cannot scope)."""
    sender = SENDERS[kind]
    if not targets:
        return []
    if sender.target_kind is None:
        return [Grant(component, sender.iam_actions, ("*",))]
    kind_of = sender.target_kind
    resources = tuple(sorted({scope.arn_of(kind_of, target) for target in targets}))
    return [Grant(component, sender.iam_actions, resources)]
