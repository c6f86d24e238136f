"""The durable outbox (see `core`): one mechanism for every message leaving awsd.

Names are loaded on first use, so `awsd outbox` and the CLI's startup stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.outbox.core import Message as Message
    from daemon.outbox.core import Outbox as Outbox
    from daemon.outbox.core import OutboxDelivered as OutboxDelivered
    from daemon.outbox.core import OutboxFull as OutboxFull
    from daemon.outbox.core import OutboxRejected as OutboxRejected
    from daemon.outbox.sender import InvalidMessage as InvalidMessage
    from daemon.outbox.sender import Outcome as Outcome
    from daemon.outbox.sender import Reject as Reject
    from daemon.outbox.sender import Retry as Retry
    from daemon.outbox.sender import Sender as Sender
    from daemon.outbox.sender import Sent as Sent
    from daemon.outbox.store import Item as Item

_WHERE = {
    "Message": "core",
    "Outbox": "core",
    "OutboxDelivered": "core",
    "OutboxFull": "core",
    "OutboxRejected": "core",
    "InvalidMessage": "sender",
    "Outcome": "sender",
    "Reject": "sender",
    "Retry": "sender",
    "Sender": "sender",
    "Sent": "sender",
    "Item": "store",
}

__all__ = [
    "InvalidMessage",
    "Item",
    "Message",
    "Outbox",
    "OutboxDelivered",
    "OutboxFull",
    "OutboxRejected",
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
