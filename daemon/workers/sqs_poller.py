"""The SQS poller: one worker per configured queue (`[sqs.<name>]`, worker `sqs:<name>`).

Promises:
- long polls (20 s by default) on a client whose read timeout is above the wait, asking only for
  as many messages as there are free slots: at most `max_in_flight` messages are being handled
  (or wait for their FIFO group) at any time, one slow handler holds only its own slot, and acks
  still waiting for SQS are bounded by the same number;
- each held message's visibility is extended before it runs out while its handler runs (never
  past 12 h), acks go out in DeleteMessageBatch calls, and a receipt that expired is logged as
  "may be redelivered", never a crash (`daemon/sqs/receipts.py`);
- a failed or timed-out message is not acked: it gets a visibility backoff from its receive count
  (or is left to the queue's redrive policy), so a poison message never spins and reaches the
  dead-letter queue after maxReceiveCount;
- FIFO queues: one message at a time per MessageGroupId, groups in parallel; a failure releases
  the group's later messages so order holds; a retried receive reuses its
  ReceiveRequestAttemptId;
- messages are decoded once (SNS envelope, raw, S3 events, JSON, text, bytes;
  `daemon/sqs/decode.py`); copies of an already handled SNS (or SQS) message are deleted unhandled;
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
from collections import OrderedDict, deque
from functools import partial
from typing import Any

from daemon.base.retry import Attempts, Backoff
from daemon.config.messaging import SqsPollerConfig
from daemon.config.models import Config
from daemon.core.aws import describe_error, error_code, is_throttle
from daemon.core.iam import CONTRIBUTORS, Grant, Scope
from daemon.core.metrics import Registry
from daemon.handlers import Handler, HandlerError, build_handler
from daemon.services import Services
from daemon.sqs.decode import Decoded, decode_message
from daemon.sqs.receipts import Held, ReceiptMetrics, Receipts
from daemon.worker import Worker, WorkerContext, WorkerSpec, fingerprint

DEFAULT_VISIBILITY = 30
STOP_RESERVE = 2.0  # seconds kept at shutdown for releasing and acking what is held
SLOT_WAIT = 5.0  # seconds between progress beats while every slot is busy
FILL_WAIT = 0.05  # seconds a receive may wait for a whole batch of slots to come free
MISSING_QUEUE = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)

Work = tuple[Held, Decoded]


class PollerMetrics:
    def __init__(self, registry: Registry, queue: str) -> None:
        def counter(name: str, text: str) -> Any:
            return registry.counter(f"awsd_sqs_{name}_total", text, ("queue",)).labels(queue=queue)

        self.received = counter("received", "Messages received")
        self.processed = counter("processed", "Messages handled successfully")
        self.failed = counter("failed", "Messages whose handler failed or timed out")
        self.duplicates = counter("duplicates", "Copies of already handled messages dropped")
        self.skipped = counter("skipped", "Messages needing no handling (s3:TestEvent)")
        self.receive_errors = counter("receive_errors", "Failed ReceiveMessage calls")
        self.receives = counter("receives", "ReceiveMessage calls answered")
        self.empty_receives = counter(
            "empty_receives", "ReceiveMessage calls that returned no message (billed all the same)"
        )
        self.receipts = ReceiptMetrics(
            deleted=counter("deleted", "Messages deleted (acked)"),
            released=counter("released", "Messages made visible again (backoff, shutdown)"),
            extended=counter("visibility_extended", "Visibility extensions by the heartbeat"),
            lost=counter(
                "redelivery_risk", "Messages whose receipt expired: they may be redelivered"
            ),
        )
        self.inflight = registry.gauge(
            "awsd_sqs_inflight",
            "Messages being handled (or waiting for their FIFO group): the max_in_flight slots",
            ("queue",),
        ).labels(queue=queue)
        self.held = registry.gauge(
            "awsd_sqs_held",
            "Messages received and not yet deleted or released (invisible because of us)",
            ("queue",),
        ).labels(queue=queue)
        self.latency = registry.histogram(
            "awsd_sqs_handler_seconds", "Handler time per message", ("queue",)
        ).labels(queue=queue)
        self.last_receive = registry.gauge(
            "awsd_sqs_last_receive_timestamp_seconds",
            "Unix time of the last successful receive",
            ("queue",),
        ).labels(queue=queue)


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


class SqsPoller(Worker):
    def __init__(self, name: str, cfg: SqsPollerConfig, services: Services) -> None:
        self.name = name
        self.cfg = cfg
        self.services = services
        self.m = PollerMetrics(services.metrics, name)
        self.seen = SeenIds(cfg.dedup_window)
        self.url: str | None = None
        self.fifo = False
        self.state = "starting"
        self.last_receive: float | None = None
        self.last_error: str | None = None
        self.handling = 0
        self.receipts: Receipts | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._groups: dict[str, deque[Work]] = {}
        self._latest: list[Held] = []
        """The messages of the latest receive (to tell finishing handlers from slow ones)."""
        self._slot = asyncio.Event()
        self._backoff = Backoff(cfg.failure_backoff, cfg.failure_backoff_max)

    # --- lifecycle --------------------------------------------------------------------------------

    async def run(self, ctx: WorkerContext) -> None:
        handler = build_handler(self.cfg.handler, self.services, log=ctx.log, name=ctx.name)
        try:
            self.url = await self._resolve_queue(ctx)
            if self.url is None:
                return
            visibility = await self._visibility(ctx, self.url)
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
            await self._receive_loop(ctx, handler, url, visibility)
        finally:
            await self._finish(ctx, self.receipts)

    async def _receive_loop(
        self, ctx: WorkerContext, handler: Handler, url: str, visibility: int
    ) -> None:
        assert self.receipts is not None
        sqs = await self.services.clients.client(
            "sqs", read_timeout=self.cfg.wait_time_seconds + 10.0
        )
        failures = Attempts(Backoff(self.cfg.receive_backoff, self.cfg.receive_backoff_max))
        attempt_id: str | None = None
        loop = asyncio.get_running_loop()
        fill_until: float | None = None
        while not ctx.stopping:
            ctx.beat()
            self.receipts.check()
            free = self.cfg.max_in_flight - self.receipts.in_flight
            if free <= 0 or self.receipts.backlog > self.cfg.max_in_flight:
                self.state = "all slots busy"
                await self._wait_for_slot(ctx, SLOT_WAIT)
                continue
            if free < self.cfg.batch_size and self._latest_still_handled():
                # The last batch's handlers are finishing: wait a moment for a whole batch of
                # slots rather than settle into half batches (twice the calls for the same
                # messages). Slots held by older, slow handlers are not waited for.
                fill_until = fill_until or loop.time() + FILL_WAIT
                if loop.time() < fill_until:
                    await self._wait_for_slot(ctx, fill_until - loop.time())
                    continue
            fill_until = None
            self.state = "polling"
            if self.fifo and attempt_id is None:
                attempt_id = uuid.uuid4().hex  # reused if this receive has to be retried
            request = self._receive_request(url, min(self.cfg.batch_size, free), visibility)
            if attempt_id is not None:
                request["ReceiveRequestAttemptId"] = attempt_id
            try:
                messages = await self._receive(ctx, sqs, request)
            except Exception as exc:  # noqa: BLE001 - every failure backs off, then retries
                if not await self._receive_failed(ctx, exc, failures):
                    return
                continue
            attempt_id = None
            self.m.receives.inc()
            if not messages:
                self.m.empty_receives.inc()
            failures.reset()
            self.last_error = None
            self.last_receive = time.time()
            self.m.last_receive.set(self.last_receive)
            self._accept(ctx, handler, messages, release=ctx.stopping)

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

    async def _receive_failed(self, ctx: WorkerContext, exc: Exception, failures: Attempts) -> bool:
        """Log, count and back off after a failed receive; False when stop came first."""
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
        return await ctx.sleep(delay)

    async def _wait_for_slot(self, ctx: WorkerContext, timeout: float) -> None:
        self._slot.clear()
        stop = asyncio.ensure_future(ctx.stop.wait())
        slot = asyncio.ensure_future(self._slot.wait())
        try:
            await asyncio.wait({stop, slot}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
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

    # --- dispatch ---------------------------------------------------------------------------------

    def _accept(
        self,
        ctx: WorkerContext,
        handler: Handler,
        messages: list[dict[str, Any]],
        *,
        release: bool,
    ) -> None:
        assert self.receipts is not None
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
            if release:  # received while stopping: give it straight back
                self.receipts.release(held, 0)
                continue
            decoded = decode_message(message, queue=self.name)
            if self._needs_no_handling(ctx, held, decoded):
                self.receipts.ack(held)
                continue
            if self.fifo and held.group_id:
                self._queue_in_group(ctx, handler, held.group_id, (held, decoded))
            else:
                self._spawn(ctx, self._handle(ctx, handler, held, decoded))
        self._gauges()

    def _latest_still_handled(self) -> bool:
        return any(h.state == "handling" for h in self._latest)

    def _needs_no_handling(self, ctx: WorkerContext, held: Held, decoded: Decoded) -> bool:
        if decoded.skip is not None:
            self.m.skipped.inc()
            ctx.log.info("message skipped", message_id=held.message_id, reason=decoded.skip)
            return True
        keys = [f"sqs:{held.message_id}"]
        if decoded.sns_message_id:
            keys.append(f"sns:{decoded.sns_message_id}")
        if any(key in self.seen for key in keys):
            self.m.duplicates.inc()
            ctx.log.info(
                "duplicate message dropped",
                message_id=held.message_id,
                sns_message_id=decoded.sns_message_id,
            )
            return True
        return False

    def _spawn(self, ctx: WorkerContext, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(partial(self._reap, ctx))

    def _reap(self, ctx: WorkerContext, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            ctx.log.error("message task failed", exc_info=task.exception())

    def _queue_in_group(self, ctx: WorkerContext, handler: Handler, group: str, work: Work) -> None:
        """FIFO: one message at a time per group; a new group starts its own task."""
        waiting = self._groups.get(group)
        if waiting is not None:
            waiting.append(work)
            return
        self._groups[group] = deque([work])
        self._spawn(ctx, self._drain_group(ctx, handler, group))

    async def _drain_group(self, ctx: WorkerContext, handler: Handler, group: str) -> None:
        waiting = self._groups[group]
        try:
            while waiting:
                held, decoded = waiting.popleft()
                if not await self._handle(ctx, handler, held, decoded):
                    break  # later messages of the group must not overtake the failed one
        finally:
            del self._groups[group]
            assert self.receipts is not None
            for held, _ in waiting:
                self.receipts.release(held, 0)

    async def _handle(
        self, ctx: WorkerContext, handler: Handler, held: Held, decoded: Decoded
    ) -> bool:
        """Run the handler on each record of one message; ack it, or apply the failure policy."""
        assert self.receipts is not None
        loop = asyncio.get_running_loop()
        began = loop.time()
        self.handling += 1
        try:
            for record in decoded.records:
                async with asyncio.timeout(self.cfg.handler_timeout):
                    await handler.handle(record)
        except asyncio.CancelledError:
            self.receipts.release(held, 0)  # shutdown: someone else may take it now
            raise
        except Exception as exc:  # noqa: BLE001 - a failed handler fails its message only
            self._failed(ctx, held, exc)
            return False
        finally:
            self.handling -= 1
            self.m.latency.observe(loop.time() - began)
            self.receipts.poke()
            self._gauges()
        self.m.processed.inc()
        self.seen.add(f"sqs:{held.message_id}")
        if decoded.sns_message_id:
            self.seen.add(f"sns:{decoded.sns_message_id}")
        self.receipts.ack(held)
        self._gauges()
        return True

    def _failed(self, ctx: WorkerContext, held: Held, exc: Exception) -> None:
        assert self.receipts is not None
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
            ctx.log.warning("handler failed; message backed off", retry_in_s=round(delay), **fields)
            self.receipts.release(held, delay)
        else:
            ctx.log.warning("handler failed; message left to the redrive policy", **fields)
            held.state = "releasing"
            self.receipts.forget(held)

    # --- stop -------------------------------------------------------------------------------------

    async def _finish(self, ctx: WorkerContext, receipts: Receipts) -> None:
        self.state = "stopping"
        tasks = set(self._tasks)
        if tasks:
            budget = max(0.0, ctx.stop.remaining(30.0) - STOP_RESERVE)
            _, pending = await asyncio.wait(tasks, timeout=budget)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if pending:
                ctx.log.info("handlers cancelled at the shutdown deadline", handlers=len(pending))
        for held in list(receipts.held):
            if held.state == "handling":
                receipts.release(held, 0)
        held_now = len(receipts.held)
        given_up = await receipts.close(max(0.5, ctx.stop.remaining(STOP_RESERVE)))
        self.state = "stopped"
        ctx.log.info("poller stopped", settled=held_now - given_up, given_up=given_up)

    # --- setup ------------------------------------------------------------------------------------

    async def _resolve_queue(self, ctx: WorkerContext) -> str | None:
        """The queue URL; waits (with backoff) for a queue that does not exist yet."""
        ref = await self.services.targets.aws_name("queues", self.cfg.queue)
        if ref.startswith(("https://", "http://")):
            return ref
        request = {"QueueName": ref}
        if ref.startswith("arn:"):  # arn:aws:sqs:region:account:name
            _, _, _, _, account, name = ref.split(":", 5)
            request = {"QueueName": name, "QueueOwnerAWSAccountId": account}
        failures = Attempts(Backoff(self.cfg.receive_backoff, self.cfg.receive_backoff_max))
        while not ctx.stopping:
            try:
                sqs = await self.services.clients.client("sqs")
                response = await sqs.get_queue_url(**request)
                return str(response["QueueUrl"])
            except Exception as exc:  # noqa: BLE001 - retried until it works or we stop
                if not await self._setup_failed(ctx, exc, failures, "resolving the queue URL"):
                    return None
        return None

    async def _visibility(self, ctx: WorkerContext, url: str) -> int | None:
        """The visibility timeout to ask for; warns when failures could never reach a DLQ."""
        failures = Attempts(Backoff(self.cfg.receive_backoff, self.cfg.receive_backoff_max))
        while not ctx.stopping:
            try:
                sqs = await self.services.clients.client("sqs")
                response = await sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
                )
                break
            except Exception as exc:  # noqa: BLE001 - retried until it works or we stop
                if not await self._setup_failed(ctx, exc, failures, "reading queue attributes"):
                    return None
        else:
            return None
        attributes = response.get("Attributes", {})
        if "RedrivePolicy" not in attributes:
            ctx.log.info(
                "queue has no redrive policy: a message that keeps failing is retried until "
                "the queue's retention period ends",
                queue=url,
                on_failure=self.cfg.on_failure,
            )
        queue_visibility = int(attributes.get("VisibilityTimeout", DEFAULT_VISIBILITY) or 0)
        return self.cfg.visibility_timeout or queue_visibility or DEFAULT_VISIBILITY

    async def _setup_failed(
        self, ctx: WorkerContext, exc: Exception, failures: Attempts, doing: str
    ) -> bool:
        self.last_error = describe_error(exc)
        missing = error_code(exc) in MISSING_QUEUE
        self.state = "waiting for the queue" if missing else "backing off after errors"
        delay = failures.next_delay()
        ctx.log.warning(
            "queue does not exist (yet); waiting for it" if missing else f"{doing} failed",
            queue=self.cfg.queue,
            error=self.last_error,
            retry_in_s=round(delay, 3),
        )
        return await ctx.sleep(delay)

    # --- health -----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        now = time.time()
        return {
            "queue": self.url or self.cfg.queue,
            "state": self.state,
            "last_receive_at": _iso(self.last_receive),
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


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _build(name: str, cfg: SqsPollerConfig, services: Services) -> Worker:
    return SqsPoller(name, cfg, services)


def _iam(config: Config, scope: Scope) -> list[Grant]:
    actions = (
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    )
    return [
        Grant(f"sqs:{name}", actions, (scope.arn_of("queues", poller.queue),))
        for name, poller in config.sqs.items()
    ]


CONTRIBUTORS.append(_iam)  # what the handlers need: daemon/handlers/configured.py


def specs(config: Config) -> list[WorkerSpec]:
    return [
        WorkerSpec(
            name=f"sqs:{name}",
            kind="sqs",
            fingerprint=fingerprint(cfg, config.aws),
            build=partial(_build, name, cfg),
        )
        for name, cfg in config.sqs.items()
    ]
