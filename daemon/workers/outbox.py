"""The outbox delivery worker: drains the durable outbox into AWS through the senders.

One batch in flight per destination (order), up to `outbox.concurrency` destinations at once,
woken at once by new messages and otherwise at the next retry time. While the disk refuses the
outbox's writes it also runs `Outbox.repair` every few seconds, so recording deliveries and
accepting messages resume by themselves when space returns. On stop it lets batches in flight
finish until the deadline; anything unfinished simply stays in the outbox for next time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.base.awserrors import describe_error, is_throttle
from daemon.config.models import Config
from daemon.outbox import Item, Outbox, Outcome, Retry, Sender
from daemon.outbox.core import Key, outbox_path
from daemon.outbox.senders import SENDERS
from daemon.worker import Worker, WorkerContext, WorkerKind, WorkerSpec, fingerprint

if TYPE_CHECKING:
    from daemon.services import Services

IDLE_WAKE = 30.0


class OutboxWorker(Worker):
    def __init__(self, services: Services) -> None:
        self.services = services
        self.outbox: Outbox = services.outbox
        self.senders: dict[str, Sender] = {kind: cls(services) for kind, cls in SENDERS.items()}

    async def run(self, ctx: WorkerContext) -> None:
        await self.outbox.open()
        inflight: dict[Key, asyncio.Task[None]] = {}
        loop = asyncio.get_running_loop()
        while not ctx.stopping:
            ctx.beat()
            self.outbox.work.clear()
            now = loop.time()
            room = self.outbox.cfg.concurrency - len(inflight)
            if self.outbox.repair_due_in(now) == 0.0:
                await self.outbox.repair(now)
            for key in self.outbox.due(now)[: max(0, room)]:
                inflight[key] = asyncio.create_task(self._deliver(ctx, key))
            waits = [
                w
                for w in (
                    self.outbox.next_due_in(loop.time()),
                    self.outbox.repair_due_in(loop.time()),
                )
                if w is not None
            ]
            wait = min(waits) if waits else None
            waiters = [
                asyncio.ensure_future(self.outbox.work.wait()),
                asyncio.ensure_future(ctx.stop.wait()),
                *inflight.values(),
            ]
            await asyncio.wait(
                waiters,
                timeout=IDLE_WAKE if wait is None else min(wait, IDLE_WAKE),
                return_when=asyncio.FIRST_COMPLETED,
            )
            for waiter in waiters[:2]:
                waiter.cancel()
            for key in [k for k, task in inflight.items() if task.done()]:
                inflight.pop(key).result()
        await self._finish(ctx, inflight)

    async def _finish(self, ctx: WorkerContext, inflight: dict[Key, asyncio.Task[None]]) -> None:
        if not inflight:
            return
        _, pending = await asyncio.wait(inflight.values(), timeout=ctx.stop.remaining(5.0))
        for task in pending:
            task.cancel()
        await asyncio.gather(*inflight.values(), return_exceptions=True)
        for key in inflight:
            self.outbox.release(key)
        if pending:
            ctx.log.info("outbox batches left for the next start", destinations=len(pending))

    async def _deliver(self, ctx: WorkerContext, key: Key) -> None:
        kind, target = key
        items = []
        try:
            sender = self.senders.get(kind)
            limit, size = (sender.max_batch, sender.max_batch_bytes) if sender else (10, 1 << 20)
            items = await self.outbox.take(key, limit, size)
            outcomes: list[Outcome]
            if sender is None:  # left by another awsd version; kept until a sender exists
                outcomes = [Retry(i.id, f"no sender for outbox kind {kind!r}") for i in items]
            else:
                outcomes = await self._send(sender, target, items)
            await self.outbox.settle(key, items, outcomes)
        except BaseException:
            self.outbox.release(key)
            raise
        ctx.beat()

    async def _send(self, sender: Sender, target: str, items: list[Item]) -> list[Outcome]:
        try:
            return await sender.send(target, items)
        except Exception as exc:  # noqa: BLE001 - every failure keeps the messages for later
            error = describe_error(exc)
            return [Retry(item.id, error, throttled=is_throttle(exc)) for item in items]

    def health(self) -> dict[str, Any]:
        # Failing destinations and their last error are in `outbox.failing`, cleared on success.
        return {"outbox": self.outbox.describe()}


def kind(sends: Callable[[Config], bool]) -> WorkerKind:
    """The delivery worker's kind: it runs when something in a config sends through the outbox
    (`sends`: any other kind's `WorkerKind.sends`), or when the outbox file already holds
    messages from an earlier run."""

    def uses(config: Config) -> bool:
        return sends(config) or _has_leftovers(config)

    def specs(config: Config) -> list[WorkerSpec]:
        return [
            WorkerSpec(
                name="outbox",
                kind="outbox",
                fingerprint=fingerprint(config.outbox, config.aws),
                build=OutboxWorker,
            )
        ]

    return WorkerKind(name="outbox", section="outbox", uses=uses, specs=specs)


def _has_leftovers(config: Config) -> bool:
    path = outbox_path(config)
    return path != ":memory:" and Path(path).exists()
