"""What the poller does with the receipt handles of the messages it holds, batched ≤ 10 per call.

A held message is one received and not yet deleted or released. While it is being handled it
counts against `max_in_flight`; once its ack or release is queued its slot is free, and the
poller bounds what waits here for SQS to the same number. Three things happen to it here:
- **heartbeat**: while its handler runs, its visibility is extended every `interval` seconds
  (ChangeMessageVisibilityBatch), never past 12 hours after it was received;
- **ack**: DeleteMessageBatch once handled; an ack waits up to `linger` for others to share its
  call, unless no handler is running that could add one;
- **release**: ChangeMessageVisibilityBatch to a given visibility (0 on shutdown, a backoff after
  a failure).
A failed call or entry is retried with capped backoff and jitter (`daemon/base/retry.py`); an entry
AWS will never accept (an expired or invalid receipt handle) is logged as "may be redelivered"
and counted, never raised. Settled messages (deleted, released or given up) are reported to the
poller through `on_settled`, which frees their slot.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from daemon.base.awserrors import describe_error, error_code
from daemon.base.retry import Attempts, Backoff
from daemon.core.metrics import Counter

MAX_VISIBILITY = 43_200
CAP_MARGIN = 60.0  # seconds kept between the last extension and SQS's 12-hour limit
BATCH = 10
GONE_CODES = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "InvalidReceiptHandle",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
        "InvalidParameterValue",
    }
)
"""Entry errors that retrying cannot fix: the receipt handle expired (the message became visible
and may have gone to another consumer), or the 12-hour limit was reached."""


@dataclass(eq=False)
class Held:
    """One message the poller holds."""

    message_id: str
    receipt: str
    received_at: float
    """Loop time of the receive (the 12-hour limit counts from it)."""
    receive_count: int = 1
    group_id: str | None = None
    state: Literal["handling", "acking", "releasing", "settled"] = "handling"
    next_extend: float = math.inf
    release_to: int = 0
    lost: bool = False
    """Its visibility could not be kept: it may be delivered again while still being handled."""


@dataclass(frozen=True, slots=True)
class ReceiptMetrics:
    deleted: Counter
    released: Counter
    extended: Counter
    lost: Counter


class Receipts:
    def __init__(
        self,
        sqs: Any,
        url: str,
        *,
        visibility: int,
        interval: float | None,
        linger: float,
        metrics: ReceiptMetrics,
        log: Any,
        on_settled: Callable[[Held], None],
        more_coming: Callable[[], bool],
    ) -> None:
        self.sqs = sqs
        self.url = url
        self.visibility = visibility
        self.interval = interval
        self.linger = linger
        self.m = metrics
        self.log = log
        self.on_settled = on_settled
        self.more_coming = more_coming
        self.held: set[Held] = set()
        self._deletes: list[Held] = []
        self._changes: list[Held] = []
        self._oldest_ack: float | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._failures = Attempts(Backoff(0.2, 10.0))
        self._retry_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.calls = {"DeleteMessageBatch": 0, "ChangeMessageVisibilityBatch": 0}
        """API calls made, for health (what acking costs)."""

    # --- what the poller calls --------------------------------------------------------------------

    def hold(self, held: Held) -> None:
        if self.interval is not None:
            held.next_extend = held.received_at + self.interval
        self.held.add(held)
        self._wake.set()

    def ack(self, held: Held) -> None:
        held.state = "acking"
        if self._oldest_ack is None:
            self._oldest_ack = asyncio.get_running_loop().time()
        self._deletes.append(held)
        self._wake.set()

    def release(self, held: Held, visibility: float) -> None:
        """Make it visible again after `visibility` seconds (0: at once)."""
        held.state = "releasing"
        held.release_to = max(0, min(MAX_VISIBILITY, math.ceil(visibility)))
        self._changes.append(held)
        self._wake.set()

    def forget(self, held: Held) -> None:
        """Stop holding it without telling SQS: it comes back when its visibility runs out."""
        self._settle(held)

    @property
    def in_flight(self) -> int:
        """Held messages not yet handled (running, or waiting for their FIFO group)."""
        return sum(1 for h in self.held if h.state == "handling")

    @property
    def backlog(self) -> int:
        """Acks and releases not yet confirmed by SQS."""
        return len(self._deletes) + len(self._changes)

    def poke(self) -> None:
        """Re-check whether waiting acks should go now (a handler finished)."""
        self._wake.set()

    # --- the loop ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"sqs-receipts:{self.url}")

    async def _run(self) -> None:
        """Until closed and drained: send acks, releases and heartbeat extensions when due."""
        loop = asyncio.get_running_loop()
        while not (self._closing and not self.backlog):
            wait = self._next_wait(loop.time())
            if wait > 0:
                self._wake.clear()
                try:
                    async with asyncio.timeout(None if math.isinf(wait) else wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            await self._round(loop.time())

    async def close(self, timeout: float) -> int:
        """Send what is waiting (retrying for up to `timeout` seconds), then stop; return how
        many acks and releases had to be given up (those messages may be redelivered)."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if not task.cancelled() and task.exception() is not None:
                self.log.error("receipt loop failed", exc_info=task.exception())
        self._deletes, self._changes = [], []
        left = list(self.held)
        for held in left:
            self._lost(held, "shutdown", {"Code": "GaveUp", "Message": "shutdown deadline"})
            self._settle(held)
        return len(left)

    def check(self) -> None:
        """Raise what stopped the receipt loop, if it died (the poller then crashes and is
        restarted, instead of waiting forever for acks that will never be sent)."""
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            error = task.exception()
            if error is not None:
                raise RuntimeError("the ack and heartbeat loop failed") from error

    def _next_wait(self, now: float) -> float:
        """Seconds until the next round: at once for releases and full (or final) ack batches,
        after `linger` for a partial one, half an interval before a heartbeat is due; never
        before the back-off after a failed call has passed."""
        ready = [math.inf]
        if self._changes:
            ready.append(now)
        if self._deletes:
            full = len(self._deletes) >= BATCH or self._closing or not self.more_coming()
            oldest = self._oldest_ack if self._oldest_ack is not None else now
            ready.append(now if full else oldest + self.linger)
        if self.interval is not None:
            due = [h.next_extend for h in self.held if h.state == "handling" and not h.lost]
            if due:
                ready.append(min(due) - self.interval / 2)
        return max(0.0, min(ready) - now, self._retry_at - now)

    async def _round(self, now: float) -> None:
        deletes, self._deletes = self._deletes[:], []
        self._oldest_ack = None
        changes, self._changes = self._changes[:], []
        extend: list[Held] = []
        if self.interval is not None:
            extend = [
                h
                for h in self.held
                if h.state == "handling" and not h.lost and h.next_extend - self.interval / 2 <= now
            ]
        calls = [self._delete(deletes[i : i + BATCH]) for i in range(0, len(deletes), BATCH)]
        entries = [(h, h.release_to) for h in changes] + self._extensions(extend, now)
        calls += [self._change(entries[i : i + BATCH]) for i in range(0, len(entries), BATCH)]
        if not calls:
            return
        failed = sum(await asyncio.gather(*calls))
        if failed:
            self._retry_at = asyncio.get_running_loop().time() + self._failures.next_delay()
        else:
            self._failures.reset()
            self._retry_at = 0.0

    def _extensions(self, due: list[Held], now: float) -> list[tuple[Held, int]]:
        out = []
        for held in due:
            left = held.received_at + MAX_VISIBILITY - CAP_MARGIN - now
            seconds = min(self.visibility, math.floor(left))
            if seconds < 1:
                held.lost = True
                self.log.warning(
                    "message reached SQS's 12 h visibility limit; it will become visible again",
                    message_id=held.message_id,
                )
                continue
            out.append((held, seconds))
        return out

    # --- calls ------------------------------------------------------------------------------------

    async def _delete(self, batch: list[Held]) -> int:
        entries = [{"Id": str(i), "ReceiptHandle": h.receipt} for i, h in enumerate(batch)]
        self.calls["DeleteMessageBatch"] += 1
        try:
            response = await self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
        except Exception as exc:  # noqa: BLE001 - every failure is retried later
            self._call_failed("DeleteMessageBatch", exc, len(batch))
            self._deletes.extend(batch)
            return 1
        for ok in response.get("Successful", []):
            held = batch[int(ok["Id"])]
            self.m.deleted.inc()
            self._settle(held)
        retry = 0
        for bad in response.get("Failed", []):
            held = batch[int(bad["Id"])]
            if bad.get("Code") in GONE_CODES:
                self._lost(held, "delete", bad)
                self._settle(held)
            else:
                retry += 1
                self._deletes.append(held)
                self.last_error = f"DeleteMessageBatch entry: {bad.get('Code')}"
        return 1 if retry else 0

    async def _change(self, batch: list[tuple[Held, int]]) -> int:
        entries = [
            {"Id": str(i), "ReceiptHandle": h.receipt, "VisibilityTimeout": seconds}
            for i, (h, seconds) in enumerate(batch)
        ]
        self.calls["ChangeMessageVisibilityBatch"] += 1
        try:
            response = await self.sqs.change_message_visibility_batch(
                QueueUrl=self.url, Entries=entries
            )
        except Exception as exc:  # noqa: BLE001 - every failure is retried later
            self._call_failed("ChangeMessageVisibilityBatch", exc, len(batch))
            self._changes.extend(h for h, _ in batch if h.state == "releasing")
            return 1
        now = asyncio.get_running_loop().time()
        for ok in response.get("Successful", []):
            held, _ = batch[int(ok["Id"])]
            if held.state == "releasing":
                self.m.released.inc()
                self._settle(held)
            elif self.interval is not None:
                held.next_extend = now + self.interval
                self.m.extended.inc()
        retry = 0
        for bad in response.get("Failed", []):
            held, _ = batch[int(bad["Id"])]
            if held.state == "releasing":
                if bad.get("Code") in GONE_CODES:
                    self._settle(held)  # it is visible (or gone) already: what we wanted
                else:
                    retry += 1
                    self._changes.append(held)
            elif held.state == "handling":
                if bad.get("Code") in GONE_CODES:
                    self._lost(held, "extend", bad)
                else:
                    retry += 1  # the next round extends it again
        return 1 if retry else 0

    # --- bookkeeping ------------------------------------------------------------------------------

    def _settle(self, held: Held) -> None:
        if held.state == "settled":
            return
        held.state = "settled"
        self.held.discard(held)
        self.on_settled(held)

    def _lost(self, held: Held, what: str, entry: dict[str, Any]) -> None:
        held.lost = True
        self.m.lost.inc()
        self.log.warning(
            "receipt handle no longer valid; the message may be redelivered",
            message_id=held.message_id,
            during=what,
            code=entry.get("Code"),
            reason=entry.get("Message"),
        )

    def _call_failed(self, operation: str, exc: BaseException, entries: int) -> None:
        self.last_error = f"{operation}: {describe_error(exc)}"
        self.log.warning(
            "SQS call failed; retrying",
            operation=operation,
            entries=entries,
            error=describe_error(exc),
            code=error_code(exc),
            consecutive_failures=self._failures.failures + 1,
        )
