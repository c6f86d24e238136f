"""The durable outbox (see `core`): one mechanism for every message leaving awsd.

Names are loaded on first use, so `awsd outbox` and the CLI's startup stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.outbox.core import Outbox as Outbox
    from daemon.outbox.messages import Message as Message
    from daemon.outbox.messages import OutboxDelivered as OutboxDelivered
    from daemon.outbox.messages import OutboxDiskFull as OutboxDiskFull
    from daemon.outbox.messages import OutboxDropped as OutboxDropped
    from daemon.outbox.messages import OutboxFull as OutboxFull
    from daemon.outbox.messages import OutboxRejected as OutboxRejected
    from daemon.outbox.messages import OutboxUnavailable as OutboxUnavailable
    from daemon.outbox.outcomes import Fate as Fate
    from daemon.outbox.outcomes import MessageStatus as MessageStatus
    from daemon.outbox.sender import InvalidMessage as InvalidMessage
    from daemon.outbox.sender import Outcome as Outcome
    from daemon.outbox.sender import Reject as Reject
    from daemon.outbox.sender import Retry as Retry
    from daemon.outbox.sender import Sender as Sender
    from daemon.outbox.sender import Sent as Sent
    from daemon.outbox.store import Item as Item

_WHERE = {
    "Message": "messages",
    "Outbox": "core",
    "OutboxDelivered": "messages",
    "OutboxDiskFull": "messages",
    "OutboxDropped": "messages",
    "OutboxFull": "messages",
    "OutboxRejected": "messages",
    "OutboxUnavailable": "messages",
    "Fate": "outcomes",
    "MessageStatus": "outcomes",
    "InvalidMessage": "sender",
    "Outcome": "sender",
    "Reject": "sender",
    "Retry": "sender",
    "Sender": "sender",
    "Sent": "sender",
    "Item": "store",
}

__all__ = [
    "Fate",
    "InvalidMessage",
    "Item",
    "Message",
    "MessageStatus",
    "Outbox",
    "OutboxDelivered",
    "OutboxDiskFull",
    "OutboxDropped",
    "OutboxFull",
    "OutboxRejected",
    "OutboxUnavailable",
    "Outcome",
    "Reject",
    "Retry",
    "Sender",
    "Sent",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"daemon.outbox.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'daemon.outbox' has no attribute {name!r}")
