"""The durable outbox: every outgoing message is committed to SQLite before anyone calls it sent.

Promises:
- `put` returns only after the message is committed (fsync'd under `durability = "full"`), so a
  producer may then ack its own input (delete the SQS message it forwarded, answer the CLI);
- messages leave only when AWS confirmed them (or rejected them for good: then they move to the
  dead-letter table, counted and logged, never silently deleted);
- per destination, messages are delivered oldest first, one batch in flight at a time, and a
  destination that fails backs off as a whole (head-of-line), so order per destination holds;
- it is bounded by count and bytes; when full it blocks producers (up to `block_timeout`) or drops
  the oldest, counted and logged, as configured;
- commits are grouped: concurrent puts share one transaction, so fsync does not cap throughput.
All SQLite work runs on one dedicated thread; the event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.base.retry import Backoff
from daemon.config.models import Config
from daemon.config.outbox import OutboxConfig
from daemon.core.events import Event, EventBus
from daemon.core.logs import get_logger
from daemon.core.metrics import Registry
from daemon.outbox.sender import InvalidMessage, Outcome, Reject, Retry, Sent
from daemon.outbox.senders import SENDERS
from daemon.outbox.store import Item, NewMessage, Store

log = get_logger()

Key = tuple[str, str]


def outbox_path(config: Config) -> str:
    """The outbox file of a config: `outbox.path`, else `outbox.sqlite3` in the state dir."""
    return config.outbox.path or str(Path(config.runtime.state_dir) / "outbox.sqlite3")


class OutboxFull(Exception):
    """The outbox stayed full for `block_timeout` seconds; the message was not accepted."""


@dataclass(frozen=True, slots=True)
class Message:
    """What a producer hands to the outbox."""

    kind: str
    """The sender that delivers it: `sns`, `sms`, `sqs`, `kinesis`."""
    target: str
    """Topic, phone number, queue or stream: a name, an ARN or a URL, as the sender takes it."""
    body: dict[str, Any]
    """The kind-specific payload (see the sender's `validate`)."""
    origin: str = ""
    """Who put it (a worker name): echoed in OutboxDelivered / OutboxRejected events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxDelivered(Event):
    item_id: int
    kind: str
    target: str
    origin: str
    message_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRejected(Event):
    item_id: int
    kind: str
    target: str
    origin: str
    error: str


@dataclass
class _Target:
    count: int = 0
    next_attempt: float = 0.0
    failures: int = 0
    inflight: bool = False
    last_error: str | None = None


class Outbox:
    """The process's one outbox (it outlives reloads; limits follow the current config)."""

    def __init__(
        self, cfg: OutboxConfig, path: str, *, metrics: Registry, events: EventBus
    ) -> None:
        self.cfg = cfg
        self.path = path
        self.events = events
        self.count = 0
        self.bytes = 0
        self.dead = 0
        self.oldest_created: float | None = None
        self._store: Store | None = None
        self._targets: dict[Key, _Target] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._pending_writes: list[tuple[list[NewMessage], asyncio.Future[list[int]]]] = []
        self._writes_lock = threading.Lock()
        self._open_lock = asyncio.Lock()
        self._space = asyncio.Condition()
        self.work = asyncio.Event()
        """Set whenever there may be something new to deliver (a put, a settled batch)."""
        self._m_put = metrics.counter("awsd_outbox_accepted_total", "Messages accepted", ("kind",))
        self._m_sent = metrics.counter(
            "awsd_outbox_delivered_total", "Messages delivered", ("kind",)
        )
        self._m_retry = metrics.counter(
            "awsd_outbox_retries_total", "Messages put back for a later attempt", ("kind",)
        )
        self._m_dead = metrics.counter(
            "awsd_outbox_rejected_total",
            "Messages rejected for good (dead-letter table)",
            ("kind",),
        )
        self._m_dropped = metrics.counter(
            "awsd_outbox_dropped_total", "Messages dropped because the outbox was full", ("kind",)
        )
        self._m_full = metrics.counter(
            "awsd_outbox_full_total", "Puts refused after waiting for room", ("kind",)
        )
        self._m_latency = metrics.histogram(
            "awsd_outbox_delivery_seconds", "Time from acceptance to AWS confirmation", ("kind",)
        )
        depth = metrics.gauge("awsd_outbox_depth", "Messages waiting for delivery")
        self._depth = depth.labels()
        self._bytes = metrics.gauge("awsd_outbox_bytes", "Body bytes waiting for delivery").labels()

    # --- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file (idempotent); learn what is waiting from before a restart."""
        async with self._open_lock:
            if self._store is not None:
                return
            store = await self._run(Store, self.path, durability=self.cfg.durability)
            self._store = store
            targets = await self._run(store.targets)
            self.count, self.bytes = await self._run(store.totals)
            for kind, target, count in targets:
                self._targets[(kind, target)] = _Target(count=count)
            self.oldest_created = await self._run(store.oldest_created)
            self._gauges()
            if self.count:
                log.info(
                    "outbox has messages from before; delivering them first",
                    waiting=self.count,
                    destinations=len(targets),
                    path=self.path,
                )
            self.work.set()

    async def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await self._run(store.close)
        self._executor.shutdown(wait=True)

    def configure(self, cfg: OutboxConfig) -> None:
        """Take new limits and retry settings (the path stays until a restart)."""
        if cfg.path != self.cfg.path:
            log.warning("outbox.path changes take effect at the next restart", running=self.path)
        self.cfg = cfg

    # --- producers -------------------------------------------------------------------------------

    async def put(self, message: Message) -> int:
        """Accept one message durably; return its id. Raises InvalidMessage or OutboxFull."""
        return (await self.put_many([message]))[0]

    async def put_many(self, messages: list[Message]) -> list[int]:
        """Accept several messages in one commit."""
        new = [self._validated(m) for m in messages]
        await self.open()
        await self._make_room(new)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        future.add_done_callback(lambda done: self._written(new, done))
        with self._writes_lock:
            self._pending_writes.append((new, future))
        loop.run_in_executor(self._executor, self._flush_writes, loop)
        # Shielded: a producer cancelled mid-commit must not lose track of a message that may
        # still be written (it will then be delivered; accounting happens in `_written`).
        return await asyncio.shield(future)

    def _written(self, new: list[NewMessage], future: asyncio.Future[list[int]]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._release(new)
            return
        for m in new:
            self._m_put.labels(kind=m.kind).inc()
            target = self._targets.setdefault((m.kind, m.target), _Target())
            target.count += 1
        if self.oldest_created is None:
            self.oldest_created = time.time()
        self.work.set()

    def _validated(self, message: Message) -> NewMessage:
        sender = SENDERS.get(message.kind)
        if sender is None:
            raise InvalidMessage(
                f"unknown message kind {message.kind!r}; known: {', '.join(sorted(SENDERS))}"
            )
        size = sender.validate(message.target, message.body)
        if size > self.cfg.max_bytes:
            raise InvalidMessage(
                f"message of {size} bytes is larger than the whole outbox "
                f"(outbox.max_bytes = {self.cfg.max_bytes})"
            )
        return NewMessage(message.kind, message.target, message.body, message.origin, size)

    async def _make_room(self, new: list[NewMessage]) -> None:
        count, size = len(new), sum(m.size for m in new)
        async with self._space:
            if self._fits(count, size):
                self._reserve(count, size)
                return
            if self.cfg.full_policy == "drop_oldest":
                await self._drop_oldest(count, size)
                self._reserve(count, size)
                return
            try:
                async with asyncio.timeout(self.cfg.block_timeout):
                    await self._space.wait_for(lambda: self._fits(count, size))
            except TimeoutError:
                for m in new:
                    self._m_full.labels(kind=m.kind).inc()
                log.error(
                    "outbox full: message refused",
                    waiting=self.count,
                    bytes=self.bytes,
                    waited_s=self.cfg.block_timeout,
                )
                raise OutboxFull(
                    f"outbox full ({self.count} messages, {self.bytes} bytes) for "
                    f"{self.cfg.block_timeout}s"
                ) from None
            self._reserve(count, size)

    def _fits(self, count: int, size: int) -> bool:
        return (
            self.count + count <= self.cfg.max_messages and self.bytes + size <= self.cfg.max_bytes
        )

    def _reserve(self, count: int, size: int) -> None:
        self.count += count
        self.bytes += size
        self._gauges()

    def _release(self, new: list[NewMessage]) -> None:
        self.count -= len(new)
        self.bytes -= sum(m.size for m in new)
        self._gauges()

    async def _drop_oldest(self, count: int, size: int) -> None:
        store = await self._opened()
        need_count = max(0, self.count + count - self.cfg.max_messages)
        need_size = max(0, self.bytes + size - self.cfg.max_bytes)
        dropped = await self._run(store.drop_oldest, need_count, need_size)
        for item_id, kind, target, item_size in dropped:
            self.count -= 1
            self.bytes -= item_size
            self._m_dropped.labels(kind=kind).inc()
            state = self._targets.get((kind, target))
            if state is not None:
                state.count -= 1
                if state.count <= 0 and not state.inflight:
                    del self._targets[(kind, target)]
            log.warning(
                "outbox full: dropped the oldest message", id=item_id, kind=kind, target=target
            )
        self._gauges()

    def _flush_writes(self, loop: asyncio.AbstractEventLoop) -> None:
        """Runs on the outbox thread: commit every pending put in one transaction."""
        with self._writes_lock:
            batch, self._pending_writes = self._pending_writes, []
        if not batch:
            return
        store = self._store
        try:
            if store is None:
                raise RuntimeError("outbox is closed")
            ids = store.insert([m for messages, _ in batch for m in messages])
        except Exception as exc:  # noqa: BLE001 - handed to every waiting producer
            for _, future in batch:
                loop.call_soon_threadsafe(_fail, future, exc)
            return
        start = 0
        for messages, future in batch:
            loop.call_soon_threadsafe(_resolve, future, ids[start : start + len(messages)])
            start += len(messages)

    # --- delivery --------------------------------------------------------------------------------

    def due(self, now: float) -> list[Key]:
        """Destinations with messages whose back-off has passed and no batch in flight."""
        return [
            k
            for k, t in self._targets.items()
            if t.count > 0 and not t.inflight and t.next_attempt <= now
        ]

    def next_due_in(self, now: float) -> float | None:
        waits = [
            t.next_attempt - now for t in self._targets.values() if t.count > 0 and not t.inflight
        ]
        return max(0.0, min(waits)) if waits else None

    async def take(self, key: Key, limit: int, max_bytes: int) -> list[Item]:
        """The oldest messages of a destination, marked in flight until `settle`."""
        store = await self._opened()
        state = self._targets[key]
        state.inflight = True
        try:
            items: list[Item] = await self._run(store.head, key[0], key[1], limit, max_bytes)
            return items
        except BaseException:
            state.inflight = False
            raise

    async def settle(self, key: Key, items: list[Item], outcomes: list[Outcome]) -> None:
        """Apply a batch's outcomes: delete sent, bury rejected, count retries, back off."""
        store = await self._opened()
        by_id = {item.id: item for item in items}
        sent = {o.id: o for o in outcomes if isinstance(o, Sent) and o.id in by_id}
        rejected = {o.id: o.error for o in outcomes if isinstance(o, Reject) and o.id in by_id}
        answered = sent.keys() | rejected.keys()
        retry = {o.id: o.error for o in outcomes if isinstance(o, Retry) and o.id in by_id}
        retry.update(
            {i: "no outcome from the sender" for i in by_id if i not in answered and i not in retry}
        )
        throttled = any(isinstance(o, Retry) and o.throttled for o in outcomes)

        def write() -> tuple[int, float | None]:
            assert store is not None
            store.delete(sent)
            store.failed(retry)
            trimmed = store.bury(rejected, self.cfg.dead_letter_max)
            return trimmed, store.oldest_created()

        trimmed, self.oldest_created = await self._run(write)
        self._account(key, by_id, sent, rejected)
        self._advance(key, len(sent) + len(rejected), retry, throttled)
        if trimmed:
            log.warning("dead-letter table full: oldest entries removed", removed=trimmed)
        async with self._space:
            self._space.notify_all()
        self.work.set()

    def _account(
        self, key: Key, by_id: dict[int, Item], sent: dict[int, Sent], rejected: dict[int, str]
    ) -> None:
        kind, target = key
        now_wall = time.time()
        for item_id in (*sent, *rejected):
            self.count -= 1
            self.bytes -= by_id[item_id].size
        for item_id, outcome in sent.items():
            self._m_sent.labels(kind=kind).inc()
            self._m_latency.labels(kind=kind).observe(max(0.0, now_wall - by_id[item_id].created))
            self.events.publish(
                OutboxDelivered(
                    source="outbox",
                    item_id=item_id,
                    kind=kind,
                    target=target,
                    origin=by_id[item_id].origin,
                    message_id=outcome.message_id,
                )
            )
        for item_id, error in rejected.items():
            self.dead += 1
            self._m_dead.labels(kind=kind).inc()
            log.error(
                "outbox message rejected for good; kept in the dead-letter table",
                id=item_id,
                kind=kind,
                target=target,
                error=error,
            )
            self.events.publish(
                OutboxRejected(
                    source="outbox",
                    item_id=item_id,
                    kind=kind,
                    target=target,
                    origin=by_id[item_id].origin,
                    error=error,
                )
            )
        self._gauges()

    def _advance(self, key: Key, done: int, retry: dict[int, str], throttled: bool) -> None:
        """Update a destination after a batch: fewer waiting; back off as a whole on failures."""
        state = self._targets[key]
        state.inflight = False
        state.count -= done
        if retry:
            self._m_retry.labels(kind=key[0]).inc(len(retry))
            backoff = Backoff(self.cfg.retry_initial, self.cfg.retry_max)
            delay = backoff.delay(state.failures + (2 if throttled else 0))
            state.failures += 1
            state.next_attempt = asyncio.get_running_loop().time() + delay
            state.last_error = next(iter(retry.values()))
            log.warning(
                "outbox delivery failed; retrying later",
                kind=key[0],
                target=key[1],
                messages=len(retry),
                error=state.last_error,
                retry_in_s=round(delay, 3),
                consecutive_failures=state.failures,
            )
        else:
            state.failures, state.next_attempt, state.last_error = 0, 0.0, None
        if state.count <= 0:
            del self._targets[key]

    def release(self, key: Key) -> None:
        """A batch was abandoned (shutdown): its messages stay, ready for the next attempt."""
        state = self._targets.get(key)
        if state is not None:
            state.inflight = False

    async def status(self, item_id: int) -> str:
        """`pending`, `dead` or `delivered` (ids are never reused)."""
        store = await self._opened()
        state: str = await self._run(store.contains, item_id)
        return state

    async def with_origin(self, origin: str) -> list[int]:
        """Ids of the messages from `origin` still waiting or dead (a scan: for recovery at
        start, not for the hot path)."""
        store = await self._opened()
        ids: list[int] = await self._run(store.with_origin, origin)
        return ids

    def describe(self) -> dict[str, Any]:
        failing = {f"{k[0]}:{k[1]}": t.last_error for k, t in self._targets.items() if t.failures}
        return {
            "waiting": self.count,
            "bytes": self.bytes,
            "oldest_age_s": round(time.time() - self.oldest_created, 3)
            if self.oldest_created and self.count
            else 0.0,
            "destinations": len(self._targets),
            "rejected_since_start": self.dead,
            "failing": failing,
        }

    # --- plumbing --------------------------------------------------------------------------------

    async def _opened(self) -> Store:
        await self.open()
        assert self._store is not None
        return self._store

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def _gauges(self) -> None:
        self._depth.set(self.count)
        self._bytes.set(self.bytes)


def _resolve(future: asyncio.Future[list[int]], ids: list[int]) -> None:
    if not future.done():
        future.set_result(ids)


def _fail(future: asyncio.Future[list[int]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
