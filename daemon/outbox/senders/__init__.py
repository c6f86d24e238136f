"""The senders, one module per message kind. Adding a kind: write `<kind>.py` with a `Sender`
subclass and add it to `SENDERS`."""

from __future__ import annotations

from daemon.outbox.sender import Sender
from daemon.outbox.senders.kinesis import KinesisSender
from daemon.outbox.senders.sms import SmsSender
from daemon.outbox.senders.sns import SnsSender
from daemon.outbox.senders.sqs import SqsSender

SENDERS: dict[str, type[Sender]] = {
    KinesisSender.kind: KinesisSender,
    SqsSender.kind: SqsSender,
    SnsSender.kind: SnsSender,
    SmsSender.kind: SmsSender,
}
