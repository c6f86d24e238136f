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
- commits are grouped: concurrent puts share one transaction, so fsync does not cap throughput;
- a full disk is told apart (`OutboxDiskFull`, "state directory full: N bytes free") and never
  makes it send a message twice: intake stops below `min_free_bytes` and a reserve file is
  given up to record deliveries (`space.py`); a message AWS accepted that still cannot be
  removed from the file is remembered as delivered in memory and never sent again while the
  process lives (at most once more after a restart); the record is written, and intake
  reopens, by itself once space returns (`repair`, run by the delivery worker);
- every message has a status (`status`): accepted, delivered, dropped (why), dead (AWS's error)
  or unknown, from a bounded record of recent outcomes (`outcomes.py`).
All SQLite work runs on one dedicated thread; the event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.base.files import is_disk_full
from daemon.base.retry import Backoff
from daemon.config.models import Config
from daemon.config.outbox import OutboxConfig
from daemon.core.events import EventBus
from daemon.core.logs import get_logger
from daemon.core.metrics import Registry
from daemon.core.storage import StateDirFull, StateHealth
from daemon.outbox.ledger import Ledger
from daemon.outbox.messages import (
    Message,
    OutboxDelivered,
    OutboxDiskFull,
    OutboxDropped,
    OutboxFull,
    OutboxRejected,
    OutboxUnavailable,
)
from daemon.outbox.outcomes import DropReason, Fate, MessageStatus, OutcomeRecord
from daemon.outbox.sender import InvalidMessage, Outcome, Reject, Retry, Sent
from daemon.outbox.senders import SENDERS
from daemon.outbox.space import Headroom
from daemon.outbox.store import Item, NewMessage, Store, StoreUnavailable

log = get_logger()

Key = tuple[str, str]
STORE = "outbox"
"""The outbox's name in the state health record (`/readyz`, `/status`, metrics)."""
REPAIR_EVERY = 2.0
"""Seconds between attempts to write what the disk refused, and to reopen intake."""


def outbox_path(config: Config) -> str:
    """The outbox file of a config: `outbox.path`, else `outbox.sqlite3` in the state dir."""
    return config.outbox.path or str(Path(config.runtime.state_dir) / "outbox.sqlite3")


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
        self,
        cfg: OutboxConfig,
        path: str,
        *,
        metrics: Registry,
        events: EventBus,
        health: StateHealth | None = None,
    ) -> None:
        self.cfg = cfg
        self.path = path
        self.events = events
        self.health = health or StateHealth(metrics, events)
        """Where disk trouble is reported (the daemon's one record of its state stores)."""
        self.health.watch(STORE)
        self.record = OutcomeRecord(cfg.outcomes_kept)
        """Recent outcomes in memory (the file keeps them too, when the disk lets it)."""
        self.headroom = Headroom(path, min_free=cfg.min_free_bytes, reserve=cfg.reserve_bytes)
        self.ledger = Ledger(STORE, path, headroom=self.headroom, health=self.health)
        """Writes what became of messages; keeps in memory what the disk refuses."""
        self._repair_at = 0.0
        self._dir = str(Path(path).parent)
        self.intake_refused: str | None = None
        """Why the last put was refused for the disk's sake, until a put or `repair` succeeds."""
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
            try:
                store = await self._run(Store, self.path, durability=self.cfg.durability)
            except StoreUnavailable as exc:
                cause = exc.__cause__ or exc
                self.health.failed(STORE, self.path, cause)
                if is_disk_full(cause):
                    raise OutboxDiskFull(StateDirFull(self._dir, self.headroom.free())) from None
                raise OutboxUnavailable(str(exc)) from None
            self._store = store
            await self._run(self.headroom.ensure_reserve)
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
        self.record.resize(cfg.outcomes_kept)
        self.headroom.configure(min_free=cfg.min_free_bytes, reserve=cfg.reserve_bytes)

    # --- producers -------------------------------------------------------------------------------

    async def put(self, message: Message) -> int:
        """Accept one message durably; return its id. Raises InvalidMessage or OutboxFull
        (OutboxDiskFull when the state directory is full)."""
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
            exc = None if future.cancelled() else future.exception()
            if isinstance(exc, OutboxDiskFull | OutboxUnavailable):
                self.intake_refused = str(exc)
                self.health.failed(STORE, self.path, exc.__cause__ or exc)
            return
        self.intake_refused = None
        if not self.ledger.unrecorded:
            self.health.ok(STORE)
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
        reason = DropReason.OUTBOX_FULL
        try:
            dropped = await self._run(
                store.drop_oldest,
                need_count,
                need_size,
                reason=str(reason),
                keep_outcomes=self.cfg.outcomes_kept,
            )
        except (sqlite3.Error, OSError) as exc:
            self.health.failed(STORE, self.path, exc)
            raise self._refusal(exc) from None
        now = time.time()
        for item_id, kind, target, item_size, origin in dropped:
            self.count -= 1
            self.bytes -= item_size
            self._m_dropped.labels(kind=kind).inc()
            self.record.add(MessageStatus(item_id, Fate.DROPPED, str(reason), now))
            state = self._targets.get((kind, target))
            if state is not None:
                state.count -= 1
                if state.count <= 0 and not state.inflight:
                    del self._targets[(kind, target)]
            log.warning(
                "outbox full: dropped the oldest message", id=item_id, kind=kind, target=target
            )
            self.events.publish(
                OutboxDropped(
                    source="outbox",
                    item_id=item_id,
                    kind=kind,
                    target=target,
                    origin=origin,
                    reason=str(reason),
                )
            )
        self._gauges()

    def _refusal(self, exc: BaseException) -> Exception:
        """The exception a producer gets for a failed write (on any thread)."""
        if isinstance(exc, OutboxFull):
            return exc
        if isinstance(exc, StateDirFull):
            refusal: OutboxFull = OutboxDiskFull(exc)
        elif is_disk_full(exc):
            refusal = OutboxDiskFull(StateDirFull(self._dir, self.headroom.free()))
        elif isinstance(exc, sqlite3.Error | OSError):
            refusal = OutboxUnavailable(f"the outbox cannot write {self.path}: {exc}")
        else:
            return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
        refusal.__cause__ = exc
        return refusal

    def _flush_writes(self, loop: asyncio.AbstractEventLoop) -> None:
        """Runs on the outbox thread: commit every pending put in one transaction."""
        with self._writes_lock:
            batch, self._pending_writes = self._pending_writes, []
        if not batch:
            return
        store = self._store
        try:
            if store is None:
                raise OutboxUnavailable("the outbox is closed")
            self.headroom.check_intake()
            ids = store.insert([m for messages, _ in batch for m in messages])
        except Exception as exc:  # noqa: BLE001 - handed to every waiting producer
            refusal = self._refusal(exc)
            for _, future in batch:
                loop.call_soon_threadsafe(_fail, future, refusal)
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
        skip = self.ledger.skip(key)
        try:
            items: list[Item] = await self._run(store.head, key[0], key[1], limit, max_bytes, skip)
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
        now = time.time()
        settled = [
            MessageStatus(i, Fate.DELIVERED, None, now, o.message_id) for i, o in sent.items()
        ]
        settled += [MessageStatus(i, Fate.DEAD, error, now) for i, error in rejected.items()]
        # Settled in memory first: whatever the disk says next, these are never sent again.
        for status in settled:
            self.record.add(status)
        written = await self.ledger.write(
            self._run,
            store,
            key,
            settled,
            retry,
            keep_dead=self.cfg.dead_letter_max,
            keep_outcomes=self.cfg.outcomes_kept,
        )
        if written is None:
            self._repair_at = 0.0
        trimmed, oldest = written or (0, self.oldest_created)
        self.oldest_created = oldest
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

    # --- disk trouble ----------------------------------------------------------------------------

    def repair_due_in(self, now: float) -> float | None:
        """Seconds until `repair` should run (None: nothing to repair)."""
        headroom = self.headroom
        needed = (
            self.ledger.unrecorded
            or self.intake_refused is not None
            or STORE in self.health.failing
            or (headroom.enabled and self.cfg.reserve_bytes and not headroom.has_reserve())
        )
        return max(0.0, self._repair_at - now) if needed and self._store is not None else None

    async def repair(self, now: float) -> bool:
        """Write what the disk refused, allocate the reserve, reopen intake; True when the
        outbox's state on disk is whole again (run by the delivery worker)."""
        self._repair_at = now + REPAIR_EVERY
        store = await self._opened()
        keep = {"keep_dead": self.cfg.dead_letter_max, "keep_outcomes": self.cfg.outcomes_kept}
        if not await self.ledger.repair(self._run, store, **keep):
            return False
        self.intake_refused = None
        self.oldest_created = await self._run(store.oldest_created)
        self.health.ok(STORE)
        return True

    def release(self, key: Key) -> None:
        """A batch was abandoned (shutdown): its messages stay, ready for the next attempt."""
        state = self._targets.get(key)
        if state is not None:
            state.inflight = False

    async def status(self, item_id: int) -> MessageStatus:
        """What became of a message (see `outcomes.py`); ids are never reused."""
        known = self.record.get(item_id)
        if known is not None:
            return known
        if not 0 < item_id < 1 << 63:
            return MessageStatus(item_id, Fate.UNKNOWN)
        store = await self._opened()
        found: MessageStatus | None = await self._run(store.status, item_id)
        return found or MessageStatus(item_id, Fate.UNKNOWN)

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
            "intake": "open" if self.intake_refused is None else f"refused: {self.intake_refused}",
            "settled_not_recorded": len(self.ledger.unrecorded),
            "free_bytes": self.headroom.free(),
            "reserve": self.headroom.has_reserve(),
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
