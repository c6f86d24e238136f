"""What a sender is: how one kind of outbox message (sns, sqs, kinesis, ...) reaches AWS.

A sender validates messages when they are accepted (so a bad one fails at `put`, where the
producer can still report it, instead of in the dead-letter table) and delivers a batch of one
destination's oldest messages, returning one outcome per message: sent, retry later, or rejected
for good. It never deletes or reorders anything itself; the outbox does, from the outcomes.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from daemon.base.awserrors import describe_error, is_bad_request, is_throttle
from daemon.config.models import Config
from daemon.core.metrics import Registry
from daemon.outbox.store import Item

if TYPE_CHECKING:
    from daemon.core.aws import AwsClients
    from daemon.core.targets import Targets


class Shared(Protocol):
    """What a sender uses of the daemon's shared services (`daemon.services.Services`)."""

    config: Config
    clients: AwsClients
    metrics: Registry
    targets: Targets


class InvalidMessage(ValueError):
    """A message that can never be delivered as given (too large, missing a FIFO group id...)."""


@dataclass(frozen=True, slots=True)
class Sent:
    id: int
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    id: int
    error: str
    throttled: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    id: int
    error: str


Outcome = Sent | Retry | Reject


class Sender(abc.ABC):
    """Delivers one kind of message. Built per delivery-worker run with the shared services."""

    kind: ClassVar[str]
    max_batch: ClassVar[int] = 10
    """Most messages per call (PublishBatch and SendMessageBatch take 10, PutRecords 500)."""
    max_batch_bytes: ClassVar[int] = 256 * 1024
    """Most body bytes per call."""
    iam_actions: ClassVar[tuple[str, ...]] = ()
    """The IAM actions its calls need on a destination (see `senders.destination_grants`)."""
    target_kind: ClassVar[str | None] = None
    """The resource kind its targets name (`topics`, `queues`, `streams`); None: targets are not
    resources IAM can scope to (phone numbers), so the actions are granted on `*`."""

    def __init__(self, services: Shared) -> None:
        self.services = services

    @classmethod
    @abc.abstractmethod
    def validate(cls, target: str, body: dict[str, Any]) -> int:
        """Raise InvalidMessage with a clear reason, or return the size that counts for limits."""

    @abc.abstractmethod
    async def send_batch(self, target: str, items: list[Item]) -> list[Outcome]:
        """One API call for `items` (oldest first, all for `target`); one outcome per item.
        Raising means every item is retried later (never lost)."""

    async def send(self, target: str, items: list[Item]) -> list[Outcome]:
        """`send_batch`, isolating a poison message: when AWS refuses a whole batch as a bad
        request, each message is sent alone so only the bad one is rejected."""
        try:
            return await self.send_batch(target, items)
        except Exception as exc:
            if not is_bad_request(exc):
                raise
            if len(items) == 1:
                return [Reject(items[0].id, describe_error(exc))]
        outcomes: list[Outcome] = []
        for item in items:
            try:
                outcomes += await self.send_batch(target, [item])
            except Exception as exc:  # noqa: BLE001 - classified per message
                if is_bad_request(exc):
                    outcomes.append(Reject(item.id, describe_error(exc)))
                else:
                    outcomes.append(Retry(item.id, describe_error(exc), throttled=is_throttle(exc)))
        return outcomes
