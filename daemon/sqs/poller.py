"""The SQS poller: one queue, long polls, bounded in-flight work, graceful stop.

Promises:
- long polls (20 s by default) on a client whose read timeout is above the wait, asking only for
  as many messages as there are free slots: at most `max_in_flight` messages are being handled
  (or wait for their FIFO group) at any time, one slow handler holds only its own slot, and acks
  still waiting for SQS are bounded by the same number;
- each held message's visibility is extended before it runs out while its handler runs (never
  past 12 h), acks go out in DeleteMessageBatch calls, and a receipt that expired is logged as
  "may be redelivered", never a crash (`receipts.py`);
- a failed or timed-out message is not acked: it gets a visibility backoff from its receive count
  (or is left to the queue's redrive policy), so a poison message never spins and reaches the
  dead-letter queue after maxReceiveCount; FIFO groups run one message at a time
  (`dispatch.py`); a retried FIFO receive reuses its ReceiveRequestAttemptId;
- messages are decoded once (SNS envelope, raw, S3 events, JSON, text, bytes; `decode.py`);
  copies of an already handled SNS (or SQS) message are deleted unhandled;
- stop: no new receive, the receive in flight is allowed to finish (a cancelled receive can lose
  the messages SQS assigned to it) up to the deadline, and what it brings is released at once;
  handlers get until the deadline, then are cancelled, and every message still held is released
  with visibility 0, so nothing stays invisible after the daemon is gone;
- receive failures (throttling, endpoint down, a missing queue) back off exponentially with
  jitter and recover by themselves; health shows the time of the last successful receive.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from daemon.base.awserrors import describe_error, error_code, is_throttle
from daemon.base.clock import iso_utc
from daemon.base.retry import Attempts, Backoff
from daemon.config.messaging import SqsPollerConfig
from daemon.handlers import Handler, build_handler
from daemon.services import Services
from daemon.sqs.dispatch import Dispatch
from daemon.sqs.metrics import PollerMetrics
from daemon.sqs.queue import QueueSetup
from daemon.sqs.receipts import Held, Receipts
from daemon.worker import Worker, WorkerContext

STOP_RESERVE = 2.0  # seconds kept at shutdown for releasing and acking what is held
SLOT_WAIT = 5.0  # seconds between progress beats while every slot is busy
FILL_WAIT = 0.05  # seconds a receive may wait for a whole batch of slots to come free


class SqsPoller(Worker):
    def __init__(self, name: str, cfg: SqsPollerConfig, services: Services) -> None:
        self.name = name
        self.cfg = cfg
        self.services = services
        self.m = PollerMetrics(services.metrics, name)
        self.url: str | None = None
        self.fifo = False
        self.state = "starting"
        self.last_receive: float | None = None
        self.last_error: str | None = None
        self.receipts: Receipts | None = None
        self.dispatch: Dispatch | None = None
        self._slot = asyncio.Event()
        self._fill_until: float | None = None

    @property
    def handling(self) -> int:
        return self.dispatch.handling if self.dispatch else 0

    # --- lifecycle --------------------------------------------------------------------------------

    async def run(self, ctx: WorkerContext) -> None:
        handler = build_handler(self.cfg.handler, self.services, log=ctx.log, name=ctx.name)
        setup = QueueSetup(
            self.cfg,
            clients=self.services.clients,
            targets=self.services.targets,
            ctx=ctx,
            report=self,
        )
        try:
            self.url = await setup.url()
            if self.url is None:
                return
            visibility = await setup.visibility(self.url)
            if visibility is None:
                return
            await self._poll(ctx, handler, self.url, visibility)
        finally:
            await handler.close()
            self.m.inflight.set(0)
            self.m.held.set(0)

    async def _poll(self, ctx: WorkerContext, handler: Handler, url: str, visibility: int) -> None:
        self.fifo = url.endswith(".fifo")
        interval = None
        if self.cfg.heartbeat:
            interval = self.cfg.heartbeat_interval or max(0.2, visibility / 3)
        self.receipts = Receipts(
            await self.services.clients.client("sqs"),
            url,
            visibility=visibility,
            interval=interval,
            linger=self.cfg.ack_linger,
            metrics=self.m.receipts,
            log=ctx.log,
            on_settled=self._settled,
            more_coming=lambda: self.handling > 0,
        )
        self.dispatch = Dispatch(
            self.name,
            self.cfg,
            handler=handler,
            receipts=self.receipts,
            metrics=self.m,
            fifo=self.fifo,
            log=ctx.log,
            changed=self._gauges,
        )
        self.receipts.start()
        ctx.log.info(
            "polling queue",
            queue=url,
            fifo=self.fifo,
            visibility_timeout=visibility,
            heartbeat_s=interval,
            wait_time_s=self.cfg.wait_time_seconds,
            batch_size=self.cfg.batch_size,
            max_in_flight=self.cfg.max_in_flight,
        )
        try:
            await self._receive_loop(ctx, self.dispatch, url, visibility)
        finally:
            await self._finish(ctx, self.receipts, self.dispatch)

    async def _receive_loop(
        self, ctx: WorkerContext, dispatch: Dispatch, url: str, visibility: int
    ) -> None:
        """Receives while slots are free: one long poll at a time, or on a standard queue with
        room for several whole batches (`max_in_flight` >= 2 x `batch_size`), up to
        `max_in_flight // batch_size` of them at once, each asking for a whole batch. With a
        round trip of 50 ms and fast handlers, one receive at a time brings 10 messages per round
        trip whatever `max_in_flight` says; several bring that many times more."""
        assert self.receipts is not None
        sqs = await self.services.clients.client(
            "sqs", read_timeout=self.cfg.wait_time_seconds + 10.0
        )
        failures = Attempts(Backoff(self.cfg.receive_backoff, self.cfg.receive_backoff_max))
        most = 1 if self.fifo else max(1, self.cfg.max_in_flight // self.cfg.batch_size)
        receives: dict[asyncio.Task[list[dict[str, Any]]], int] = {}
        """Receives in flight, with the messages each asked for (their slots are promised)."""
        attempt_id: str | None = None
        retry_at = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not ctx.stopping:
                ctx.beat()
                self.receipts.check()
                for task in [t for t in receives if t.done()]:
                    del receives[task]
                    if task.exception() is None:
                        attempt_id = None
                        failures.reset()
                        self._received(ctx, dispatch, task.result())
                    else:
                        error = task.exception()
                        assert error is not None
                        retry_at = loop.time() + self._receive_failed(ctx, error, failures)
                wait = self._receive_wait(dispatch, receives, most, retry_at - loop.time())
                if wait is not None:
                    await self._wait_for_slot(ctx, wait, receives)
                    continue
                self.state = "polling"
                free = self.cfg.max_in_flight - self.receipts.in_flight - sum(receives.values())
                count = min(self.cfg.batch_size, free)
                if self.fifo and attempt_id is None:
                    attempt_id = uuid.uuid4().hex  # reused if this receive has to be retried
                request = self._receive_request(url, count, visibility)
                if attempt_id is not None:
                    request["ReceiveRequestAttemptId"] = attempt_id
                receives[asyncio.ensure_future(self._receive(ctx, sqs, request))] = count
        finally:
            # A stop lets the receives in flight finish (`_receive` bounds them by the stop
            # deadline); what they bring is released at once.
            if receives:
                await asyncio.wait(receives)
            for task in receives:
                if not task.cancelled() and task.exception() is None:
                    self._received(ctx, dispatch, task.result())

    def _receive_wait(
        self,
        dispatch: Dispatch,
        receives: dict[asyncio.Task[Any], int],
        most: int,
        backoff: float,
    ) -> float | None:
        """None when another receive may start now, else how long to wait at most (woken
        earlier by a receive finishing, a slot coming free, or stop)."""
        assert self.receipts is not None
        if backoff > 0:
            self.state = "backing off after receive errors"
            return backoff
        free = self.cfg.max_in_flight - self.receipts.in_flight - sum(receives.values())
        if receives and (len(receives) >= most or free < self.cfg.batch_size):
            self.state = "polling"
            return SLOT_WAIT  # the receives in flight come back first
        if free <= 0 or self.receipts.backlog > self.cfg.max_in_flight:
            self.state = "all slots busy"
            return SLOT_WAIT
        if not receives and free < self.cfg.batch_size and dispatch.latest_still_handled():
            # The last batch's handlers are finishing: wait a moment for a whole batch of slots
            # rather than settle into half batches (twice the calls for the same messages).
            # Slots held by older, slow handlers are not waited for.
            loop = asyncio.get_running_loop()
            self._fill_until = self._fill_until or loop.time() + FILL_WAIT
            if loop.time() < self._fill_until:
                return self._fill_until - loop.time()
        self._fill_until = None
        return None

    def _received(self, ctx: WorkerContext, dispatch: Dispatch, messages: list[Any]) -> None:
        self.m.receives.inc()
        if not messages:
            self.m.empty_receives.inc()
        self.last_error = None
        self.last_receive = time.time()
        self.m.last_receive.set(self.last_receive)
        dispatch.accept(messages, release=ctx.stopping)

    def _receive_request(self, url: str, count: int, visibility: int) -> dict[str, Any]:
        return {
            "QueueUrl": url,
            "MaxNumberOfMessages": count,
            "WaitTimeSeconds": self.cfg.wait_time_seconds,
            "VisibilityTimeout": visibility,
            "MessageAttributeNames": ["All"],
            "MessageSystemAttributeNames": ["All"],
        }

    async def _receive(
        self, ctx: WorkerContext, sqs: Any, request: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """One ReceiveMessage. A stop request does not cancel it: SQS may already have assigned
        messages to it, which a cancelled call would leave invisible for a whole visibility
        timeout. It is awaited up to the stop deadline, less what releasing needs."""
        call = asyncio.ensure_future(sqs.receive_message(**request))
        stopped = asyncio.ensure_future(ctx.stop.wait())
        try:
            await asyncio.wait({call, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not call.done():
                left = ctx.stop.remaining(self.cfg.wait_time_seconds + 10.0) - STOP_RESERVE
                await asyncio.wait({call}, timeout=max(0.0, left))
            if not call.done():
                ctx.log.info(
                    "the last long poll was still waiting at the stop deadline and was "
                    "cancelled; messages SQS had just assigned to it, if any, come back after "
                    "their visibility timeout",
                    wait_time_s=self.cfg.wait_time_seconds,
                )
                return []
        finally:
            stopped.cancel()
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)
        messages: list[dict[str, Any]] = call.result().get("Messages", [])
        return messages

    def _receive_failed(self, ctx: WorkerContext, exc: BaseException, failures: Attempts) -> float:
        """Log and count a failed receive; the seconds to back off before the next one."""
        self.m.receive_errors.inc()
        self.last_error = describe_error(exc)
        delay = failures.next_delay()
        if is_throttle(exc):
            delay = max(delay, failures.next_delay())  # throttled: back off faster
        self.state = "backing off after receive errors"
        ctx.log.warning(
            "receive failed; backing off",
            queue=self.url,
            error=self.last_error,
            code=error_code(exc),
            retry_in_s=round(delay, 3),
            consecutive_failures=failures.failures,
        )
        return delay

    async def _wait_for_slot(
        self, ctx: WorkerContext, timeout: float, receives: dict[asyncio.Task[Any], int]
    ) -> None:
        self._slot.clear()
        stop = asyncio.ensure_future(ctx.stop.wait())
        slot = asyncio.ensure_future(self._slot.wait())
        try:
            await asyncio.wait(
                {stop, slot, *receives}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
            slot.cancel()

    def _settled(self, held: Held) -> None:
        self._gauges()

    def _gauges(self) -> None:
        """Update the gauges and wake the receive loop: a slot or some backlog may be free."""
        assert self.receipts is not None
        self.m.inflight.set(self.receipts.in_flight)
        self.m.held.set(len(self.receipts.held))
        self._slot.set()

    async def _finish(self, ctx: WorkerContext, receipts: Receipts, dispatch: Dispatch) -> None:
        self.state = "stopping"
        await dispatch.finish(max(0.0, ctx.stop.remaining(30.0) - STOP_RESERVE))
        held_now = len(receipts.held)
        given_up = await receipts.close(max(0.5, ctx.stop.remaining(STOP_RESERVE)))
        self.state = "stopped"
        ctx.log.info("poller stopped", settled=held_now - given_up, given_up=given_up)

    # --- health -----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        now = time.time()
        return {
            "queue": self.url or self.cfg.queue,
            "state": self.state,
            "last_receive_at": iso_utc(self.last_receive, ms=True),
            "last_receive_s_ago": round(now - self.last_receive, 3) if self.last_receive else None,
            "in_flight": self.receipts.in_flight if self.receipts else 0,
            "held": len(self.receipts.held) if self.receipts else 0,
            "handling": self.handling,
            "received": int(self.m.received.value),
            "processed": int(self.m.processed.value),
            "failed": int(self.m.failed.value),
            "deleted": int(self.m.receipts.deleted.value),
            "released": int(self.m.receipts.released.value),
            "duplicates": int(self.m.duplicates.value),
            "api_calls": {
                "ReceiveMessage": int(self.m.receives.value + self.m.receive_errors.value),
                "empty_receives": int(self.m.empty_receives.value),
                **(self.receipts.calls if self.receipts else {}),
            },
            "last_error": self.last_error or (self.receipts.last_error if self.receipts else None),
        }
