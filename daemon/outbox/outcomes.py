"""What became of an outbox message: the statuses `GET /publish/<id>` and `awsd publish --wait`
report, and the bounded record of recent outcomes behind them.

A status is one of:

- `accepted` — committed, waiting for delivery (or being delivered);
- `delivered` — AWS confirmed it (with its message id when AWS gave one);
- `dropped` — removed without being delivered, with a `DropReason`;
- `dead` — AWS refused it for good, with the error (it is in the dead-letter table);
- `unknown` — an id this outbox never issued, or one settled so long ago that the record of
  recent outcomes no longer holds it. Never reported as delivered.

The record is bounded (`outbox.outcomes_kept`): in memory for the ids settled while the process
lives (also those the disk could not take), and in the outbox file's `outcomes` table, written
in the same transaction that removes the message, so a status survives a restart. New ways to
drop a message (byte or age caps) add a `DropReason`; nothing else changes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Fate(StrEnum):
    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    DROPPED = "dropped"
    DEAD = "dead"
    UNKNOWN = "unknown"


class DropReason(StrEnum):
    """Why a message left the outbox undelivered."""

    OUTBOX_FULL = "outbox_full"
    """`outbox.full_policy = "drop_oldest"` made room for newer messages."""


@dataclass(frozen=True, slots=True)
class MessageStatus:
    """The status of one outbox message (see the module docstring)."""

    id: int
    fate: Fate
    reason: str | None = None
    """`dropped`: a `DropReason`; `dead`: AWS's error."""
    at: float | None = None
    """Wall-clock time it was settled (delivered, dropped, refused)."""
    message_id: str | None = None
    """`delivered`: the id AWS gave it, when it gave one."""

    @property
    def settled(self) -> bool:
        """True once nothing more will happen to it."""
        return self.fate not in (Fate.ACCEPTED, Fate.UNKNOWN)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": str(self.fate)}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.at is not None:
            out["at"] = round(self.at, 3)
        if self.message_id is not None:
            out["message_id"] = self.message_id
        return out


class OutcomeRecord:
    """The outcomes of the most recently settled messages, in memory, at most `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, MessageStatus] = OrderedDict()

    def add(self, status: MessageStatus) -> None:
        self._items[status.id] = status
        self._items.move_to_end(status.id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, item_id: int) -> MessageStatus | None:
        return self._items.get(item_id)

    def resize(self, size: int) -> None:
        self.size = size
        while len(self._items) > size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
