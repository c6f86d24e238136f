"""From received messages to handled ones: one task per message, FIFO groups one at a time.

A received message is held (its receipt tracked by `Receipts`), decoded once, and either needs no
handling (an s3:TestEvent, a copy of a message already handled: acked unhandled) or gets a task
running the handler on each of its records, with `handler_timeout` each. Success acks it; failure
applies the failure policy: `backoff` releases it with a visibility delay grown from its receive
count, `redrive` leaves it invisible until the queue's redrive policy takes it.

FIFO queues: messages of one MessageGroupId run one at a time, in order, in one task per group;
a failure releases the group's later messages (visibility 0) so none overtakes the failed one.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable
from functools import partial
from typing import Any

from daemon.base.awserrors import describe_error
from daemon.base.retry import Backoff
from daemon.config.messaging import SqsPollerConfig
from daemon.handlers import Handler, HandlerError
from daemon.sqs.decode import Decoded, decode_message
from daemon.sqs.metrics import PollerMetrics
from daemon.sqs.receipts import Held, Receipts

Work = tuple[Held, Decoded]


class SeenIds:
    """A bounded window of ids already handled (oldest forgotten first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def add(self, key: str) -> None:
        if not self.size:
            return
        self._ids[key] = None
        self._ids.move_to_end(key)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


class Dispatch:
    """The messages of one poller between receive and ack (see the module docstring)."""

    def __init__(
        self,
        name: str,
        cfg: SqsPollerConfig,
        *,
        handler: Handler,
        receipts: Receipts,
        metrics: PollerMetrics,
        fifo: bool,
        log: Any,
        changed: Callable[[], None],
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.handler = handler
        self.receipts = receipts
        self.m = metrics
        self.fifo = fifo
        self.log = log
        self.changed = changed
        """Called whenever a slot may have come free (gauges, waking the receive loop)."""
        self.handling = 0
        self.seen = SeenIds(cfg.dedup_window)
        self.tasks: set[asyncio.Task[None]] = set()
        self._groups: dict[str, deque[Work]] = {}
        self._latest: list[Held] = []
        """The messages of the latest receive (to tell finishing handlers from slow ones)."""
        self._backoff = Backoff(cfg.failure_backoff, cfg.failure_backoff_max)

    def accept(self, messages: list[dict[str, Any]], *, release: bool) -> None:
        """Hold what one receive brought and start handling it (or give it straight back when
        it arrived while stopping)."""
        now = asyncio.get_running_loop().time()
        self._latest = []
        for message in messages:
            attributes = message.get("Attributes") or {}
            held = Held(
                message_id=str(message.get("MessageId", "")),
                receipt=str(message["ReceiptHandle"]),
                received_at=now,
                receive_count=int(attributes.get("ApproximateReceiveCount", 1) or 1),
                group_id=attributes.get("MessageGroupId"),
            )
            self.receipts.hold(held)
            self._latest.append(held)
            self.m.received.inc()
            if release:
                self.receipts.release(held, 0)
                continue
            decoded = decode_message(message, queue=self.name)
            if self._needs_no_handling(held, decoded):
                self.receipts.ack(held)
                continue
            if self.fifo and held.group_id:
                self._queue_in_group(held.group_id, (held, decoded))
            else:
                self._spawn(self._handle(held, decoded))
        self.changed()

    def latest_still_handled(self) -> bool:
        return any(h.state == "handling" for h in self._latest)

    def _needs_no_handling(self, held: Held, decoded: Decoded) -> bool:
        if decoded.skip is not None:
            self.m.skipped.inc()
            self.log.info("message skipped", message_id=held.message_id, reason=decoded.skip)
            return True
        keys = [f"sqs:{held.message_id}"]
        if decoded.sns_message_id:
            keys.append(f"sns:{decoded.sns_message_id}")
        if any(key in self.seen for key in keys):
            self.m.duplicates.inc()
            self.log.info(
                "duplicate message dropped",
                message_id=held.message_id,
                sns_message_id=decoded.sns_message_id,
            )
            return True
        return False

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(partial(self._reap))

    def _reap(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("message task failed", exc_info=task.exception())

    def _queue_in_group(self, group: str, work: Work) -> None:
        """FIFO: one message at a time per group; a new group starts its own task."""
        waiting = self._groups.get(group)
        if waiting is not None:
            waiting.append(work)
            return
        self._groups[group] = deque([work])
        self._spawn(self._drain_group(group))

    async def _drain_group(self, group: str) -> None:
        waiting = self._groups[group]
        try:
            while waiting:
                held, decoded = waiting.popleft()
                if not await self._handle(held, decoded):
                    break  # later messages of the group must not overtake the failed one
        finally:
            del self._groups[group]
            for held, _ in waiting:
                self.receipts.release(held, 0)

    async def _handle(self, held: Held, decoded: Decoded) -> bool:
        """Run the handler on each record of one message; ack it, or apply the failure policy."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        self.handling += 1
        try:
            for record in decoded.records:
                async with asyncio.timeout(self.cfg.handler_timeout):
                    await self.handler.handle(record)
        except asyncio.CancelledError:
            self.receipts.release(held, 0)  # shutdown: someone else may take it now
            raise
        except Exception as exc:  # noqa: BLE001 - a failed handler fails its message only
            self._failed(held, exc)
            return False
        finally:
            self.handling -= 1
            self.m.latency.observe(loop.time() - began)
            self.receipts.poke()
            self.changed()
        self.m.processed.inc()
        self.seen.add(f"sqs:{held.message_id}")
        if decoded.sns_message_id:
            self.seen.add(f"sns:{decoded.sns_message_id}")
        self.receipts.ack(held)
        self.changed()
        return True

    def _failed(self, held: Held, exc: Exception) -> None:
        self.m.failed.inc()
        if isinstance(exc, TimeoutError):
            error = f"handler timed out after {self.cfg.handler_timeout}s"
        else:
            error = str(exc) if isinstance(exc, HandlerError) else describe_error(exc)
        fields: dict[str, Any] = {
            "message_id": held.message_id,
            "receive_count": held.receive_count,
            "error": error,
        }
        if not isinstance(exc, HandlerError | TimeoutError):
            fields["exc_info"] = exc
        if self.cfg.on_failure == "backoff":
            delay = self._backoff.delay(max(0, held.receive_count - 1))
            self.log.warning(
                "handler failed; message backed off", retry_in_s=round(delay), **fields
            )
            self.receipts.release(held, delay)
        else:
            self.log.warning("handler failed; message left to the redrive policy", **fields)
            held.state = "releasing"
            self.receipts.forget(held)

    async def finish(self, budget: float) -> None:
        """Give running handlers `budget` seconds, cancel the rest (each releases its message),
        and release every message still waiting to be handled."""
        tasks = set(self.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=budget)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if pending:
                self.log.info("handlers cancelled at the shutdown deadline", handlers=len(pending))
        for held in list(self.receipts.held):
            if held.state == "handling":
                self.receipts.release(held, 0)
