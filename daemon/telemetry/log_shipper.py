"""The CloudWatch Logs shipper: every log event (already redacted) to a group and stream.

Why a process-lifetime service started by the daemon and not a supervised worker: it must ship
the last lines of a shutdown, which workers log while they stop, so it flushes only after every
worker has returned; it is a log sink that exists before the first worker starts (so startup
lines are shipped too) and survives reloads with its buffer; `apply` takes a changed
`[log.cloudwatch]` section or new AWS clients.

The promises:
- it never blocks the event loop: the sink only renders the event and appends it to a bounded
  buffer (drop-oldest, counted in `awsd_logs_dropped_total{reason="buffer_full"}`); batches go
  from a task, and large request bodies are gzipped in a thread;
- batches follow the PutLogEvents rules exactly (`daemon.telemetry.log_batch`);
- throttling, 5xx and connection errors are retried with capped exponential backoff and jitter
  within `retry_budget`; a batch that still fails goes back to the front of the buffer;
- its own log lines, and botocore's and aiohttp's during its calls, never feed back into it: the
  sender runs in a context the sink recognises and skips (they still reach journald);
- at shutdown it flushes until the deadline it is given, then drops what is left (counted and
  logged) and returns, even with the endpoint down.
"""

from __future__ import annotations

import asyncio
import contextvars
import gzip
import threading
import time
from collections import deque
from typing import Any

from botocore.exceptions import ClientError
from structlog.processors import format_exc_info
from structlog.typing import EventDict

from daemon.base.awserrors import describe_error, error_code, is_credentials_error, is_retryable
from daemon.base.retry import Attempts, Backoff, retry
from daemon.config.cloudwatch_logs import CloudWatchLogsConfig
from daemon.config.models import Config
from daemon.core import identity
from daemon.core.aws import AwsClients
from daemon.core.logs import add_sink, get_logger, remove_sink, to_json
from daemon.core.metrics.registry import Registry
from daemon.telemetry.log_batch import (
    DAY_MS,
    MAX_AGE_MS,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    Batch,
    LogEvent,
    make_event,
    take_batch,
)

log = get_logger()

_shipping: contextvars.ContextVar[bool] = contextvars.ContextVar("awsd_shipping", default=False)

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
BACKOFF = Backoff(initial=0.5, maximum=10.0)
IDLE_BACKOFF = Backoff(initial=1.0, maximum=60.0)
FINAL_ATTEMPTS = 3  # tries per call at shutdown: enough for a throttle, short for a dead endpoint
GZIP_FROM = 1024  # bytes; smaller bodies do not shrink enough to be worth it
GZIP_IN_THREAD_FROM = 64 * 1024  # compressing a 1 MiB body takes ~100 ms on a Raspberry Pi


class LogShipper:
    """Buffers log events and ships them with PutLogEvents."""

    def __init__(self, registry: Registry) -> None:
        self.buffer: deque[LogEvent] = deque()
        self.buffered_bytes = 0
        self._cfg: CloudWatchLogsConfig | None = None
        self._config: Config | None = None
        self._clients: AwsClients | None = None
        self._group = self._stream = ""
        self._ready: tuple[str, str] | None = None
        self._min_level = 0
        self._max_event = 262_144
        self._max_bytes = 4 * 1024 * 1024
        self._emf = False
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._attached = False
        self._sending: asyncio.Lock | None = None
        self._dropped_since_report = 0
        self.last_error: str | None = None
        self.last_shipped_at: float | None = None
        self.calls = 0
        self._shipped = registry.counter(
            "awsd_logs_shipped_total", "Log events shipped to CloudWatch Logs"
        ).labels()
        self._shipped_bytes = registry.counter(
            "awsd_logs_shipped_bytes_total",
            "Bytes of log events shipped (messages plus 26 bytes each)",
        ).labels()
        self._truncated = registry.counter(
            "awsd_logs_truncated_total", "Log events cut to CloudWatch's largest event size"
        ).labels()
        self._dropped = registry.counter(
            "awsd_logs_dropped_total", "Log events not shipped, by reason", ("reason",)
        )
        events = registry.gauge("awsd_logs_buffered_events", "Log events waiting to be shipped")
        size = registry.gauge("awsd_logs_buffered_bytes", "Bytes of log events waiting")

        def collect() -> None:
            events.labels().set(len(self.buffer))
            size.labels().set(self.buffered_bytes)

        registry.add_collector(collect)

    # --- configuration ---------------------------------------------------------------------------

    def attach(self, config: Config) -> None:
        """Start buffering events now, before AWS clients exist (startup lines get shipped)."""
        self._configure(config)
        if self.enabled and not self._attached:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            add_sink(self.sink)
            self._attached = True

    async def apply(self, config: Config, clients: AwsClients) -> None:
        """Take a (new) configuration and AWS clients; start or stop shipping."""
        self._clients = clients
        self.attach(config)
        if self.enabled and self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="log-shipper")
        elif not self.enabled and self._attached:
            remove_sink(self.sink)
            self._attached = False
            await self._cancel()
            self._drop("disabled", len(self.buffer))
            self.buffer.clear()
            self.buffered_bytes = 0
        elif self._wake is not None:
            self._wake.set()

    def _configure(self, config: Config) -> None:
        cfg = config.log.cloudwatch
        if self._cfg is not None and (cfg.log_group, cfg.log_stream) != (
            self._cfg.log_group,
            self._cfg.log_stream,
        ):
            self._ready = None
        self._cfg, self._config = cfg, config
        self._min_level = _LEVELS[cfg.level]
        self._max_event = cfg.max_event_bytes
        self._max_bytes = cfg.buffer_bytes
        self._emf = config.metrics.emf.enabled

    @property
    def enabled(self) -> bool:
        return self._cfg is not None and self._cfg.enabled

    # --- the sink (runs inside every log call: cheap, never raises, never logs) ------------------

    def sink(self, event: EventDict) -> None:
        if _shipping.get():
            return
        level = _LEVELS.get(str(event.get("level", "info")), 20)
        if level < self._min_level and "_aws" not in event:  # EMF lines always go
            return
        if "exc_info" in event:  # console format leaves tracebacks unrendered
            event = format_exc_info(None, "", dict(event))
        item, cut = make_event(time.time_ns() // 1_000_000, to_json(event), self._max_event)
        if cut:
            self._truncated.inc()
        self.buffer.append(item)
        self.buffered_bytes += item.size
        if self.buffered_bytes > self._max_bytes:
            dropped = 0
            while self.buffered_bytes > self._max_bytes and len(self.buffer) > 1:
                self.buffered_bytes -= self.buffer.popleft().size
                dropped += 1
            self._drop("buffer_full", dropped)
            self._dropped_since_report += dropped
        if self.buffered_bytes >= MAX_BATCH_BYTES or len(self.buffer) >= MAX_BATCH_EVENTS:
            self._nudge()

    def _nudge(self) -> None:
        wake, loop = self._wake, self._loop
        if wake is None or loop is None or wake.is_set():
            return
        if threading.get_ident() == self._loop_thread:
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)

    def _drop(self, reason: str, count: int) -> None:
        if count:
            self._dropped.labels(reason=reason).inc(count)

    # --- the sender ------------------------------------------------------------------------------

    async def _run(self) -> None:
        _shipping.set(True)
        assert self._wake is not None and self._cfg is not None
        failures = Attempts(IDLE_BACKOFF)
        delay = self._cfg.flush_interval
        while True:
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            self._report_drops()
            ok = await self._ship_safely(self._cfg.retry_budget)
            if ok:
                failures.reset()
                delay = self._cfg.flush_interval
            else:
                delay = max(self._cfg.flush_interval, failures.next_delay())

    async def _ship_safely(self, budget: float, attempts: int | None = None) -> bool:
        try:
            return await self.ship(budget, attempts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the shipper must outlive any failure
            self.last_error = describe_error(exc)
            log.warning("log shipping failed", error=self.last_error, buffered=len(self.buffer))
            return False

    async def ship(self, budget: float, attempts: int | None = None) -> bool:
        """Send what is buffered, batch by batch, within `budget` seconds (and `attempts` tries
        per call). False when a batch could not be sent (it is back at the front of the
        buffer). One shipment at a time, so batches reach the stream in order."""
        if self._sending is None:
            self._sending = asyncio.Lock()
        async with self._sending:
            return await self._ship(budget, attempts)

    async def _ship(self, budget: float, attempts: int | None) -> bool:
        if not self.buffer or self._clients is None or self._cfg is None:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        client = await self._clients.client("logs")
        self._register(client)
        await self._ensure_destination(client, deadline, attempts)
        while self.buffer:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            batch = self._take()
            if not batch.events:
                continue
            try:
                async with asyncio.timeout(remaining):
                    await self._put(client, batch, remaining, attempts)
            except asyncio.CancelledError:
                self._put_back(batch)
                raise
            except Exception as exc:  # noqa: BLE001 - classified below: retry later or drop
                self.last_error = describe_error(exc)
                if is_retryable(exc) or is_credentials_error(exc):
                    self._put_back(batch)
                    log.warning(
                        "PutLogEvents failed; the batch waits for the next try",
                        error=self.last_error,
                        buffered=len(self.buffer),
                    )
                    return False
                if error_code(exc) == "ResourceNotFoundException":
                    # Deleted under us: create again next time, keep the events.
                    self._ready = None
                    self._put_back(batch)
                    return False
                self._drop("rejected", len(batch.events))
                log.error(
                    "PutLogEvents rejected a batch; its events are dropped",
                    error=self.last_error,
                    dropped=len(batch.events),
                )
        return True

    def _take(self) -> Batch:
        assert self._cfg is not None
        now = time.time_ns() // 1_000_000
        max_age = MAX_AGE_MS
        if self._cfg.retention_days is not None:
            max_age = min(max_age, self._cfg.retention_days * DAY_MS)
        batch = take_batch(self.buffer, now, max_age)
        self.buffered_bytes -= batch.size
        if batch.too_old or batch.too_new:
            self._recount()
            self._drop("too_old", batch.too_old)
            self._drop("too_new", batch.too_new)
        return batch

    def _put_back(self, batch: Batch) -> None:
        # In timestamp order rather than arrival order; PutLogEvents wants that order anyway.
        self.buffer.extendleft(reversed(batch.events))
        self.buffered_bytes += batch.size

    def _recount(self) -> None:
        self.buffered_bytes = sum(e.size for e in self.buffer)

    async def _put(self, client: Any, batch: Batch, budget: float, attempts: int | None) -> None:
        events = [{"timestamp": e.timestamp, "message": e.message} for e in batch.events]

        async def call() -> dict[str, Any]:
            self.calls += 1
            result: dict[str, Any] = await client.put_log_events(
                logGroupName=self._group, logStreamName=self._stream, logEvents=events
            )
            return result

        response = await retry(
            call, retry_if=is_retryable, backoff=BACKOFF, budget=budget, attempts=attempts
        )
        rejected = self._count_rejected(response.get("rejectedLogEventsInfo") or {}, len(events))
        self._shipped.inc(len(events) - rejected)
        self._shipped_bytes.inc(batch.size)
        self.last_shipped_at = time.time()
        self.last_error = None

    def _count_rejected(self, info: dict[str, int], total: int) -> int:
        too_new = (
            total - info["tooNewLogEventStartIndex"] if "tooNewLogEventStartIndex" in info else 0
        )
        too_old = info["tooOldLogEventEndIndex"] + 1 if "tooOldLogEventEndIndex" in info else 0
        expired = info["expiredLogEventEndIndex"] + 1 if "expiredLogEventEndIndex" in info else 0
        self._drop("too_new", too_new)
        self._drop("too_old", too_old)
        self._drop("expired", max(0, expired - too_old))
        return min(total, too_new + max(too_old, expired))

    async def _ensure_destination(self, client: Any, deadline: float, attempts: int | None) -> None:
        assert self._cfg is not None and self._config is not None
        cfg, config = self._cfg, self._config
        who = await identity.resolve(
            config.env,
            ask_imds=not config.aws.local
            and identity.needs_instance_id(cfg.log_group, cfg.log_stream),
        )
        group, stream = who.expand(cfg.log_group), who.expand(cfg.log_stream)
        if self._ready == (group, stream):
            return
        self._group, self._stream = group, stream
        if cfg.create:
            budget = max(0.1, deadline - asyncio.get_running_loop().time())
            created = await self._create(
                lambda: client.create_log_group(logGroupName=group, tags={"awsd:env": config.env}),
                budget,
                attempts,
            )
            if created and cfg.retention_days is not None:
                await client.put_retention_policy(
                    logGroupName=group, retentionInDays=cfg.retention_days
                )
            await self._create(
                lambda: client.create_log_stream(logGroupName=group, logStreamName=stream),
                budget,
                attempts,
            )
        self._ready = (group, stream)
        log.info("shipping logs to CloudWatch Logs", log_group=group, log_stream=stream)

    async def _create(self, call: Any, budget: float, attempts: int | None) -> bool:
        """True when created; False when it was there already or we may not create it."""
        try:
            await retry(
                call, retry_if=is_retryable, backoff=BACKOFF, budget=budget, attempts=attempts
            )
        except ClientError as exc:
            code = error_code(exc)
            if code == "ResourceAlreadyExistsException":
                return False
            if code in ("AccessDeniedException", "AccessDenied"):
                log.warning("may not create the log group or stream", error=describe_error(exc))
                return False
            raise
        return True

    def _register(self, client: Any) -> None:
        client.meta.events.register(
            "before-call.cloudwatch-logs.PutLogEvents", self._before_put, unique_id="awsd-logs"
        )

    async def _before_put(self, params: dict[str, Any], **_: Any) -> None:
        headers = params.setdefault("headers", {})
        if self._emf:
            # Optional for CloudWatch today, required by the first EMF specification.
            headers["x-amzn-logs-format"] = "json/emf"
        body = params.get("body")
        if not (self._cfg and self._cfg.gzip) or "Content-Encoding" in headers:
            return
        if isinstance(body, str):
            body = body.encode("utf-8")
        if not isinstance(body, bytes | bytearray) or len(body) < GZIP_FROM:
            return
        if len(body) >= GZIP_IN_THREAD_FROM:
            params["body"] = await asyncio.to_thread(gzip.compress, body, 6)
        else:
            params["body"] = gzip.compress(body, 6)
        headers["Content-Encoding"] = "gzip"

    def _report_drops(self) -> None:
        if self._dropped_since_report:
            log.warning(
                "log buffer full; oldest events dropped",
                dropped=self._dropped_since_report,
                buffer_bytes=self._max_bytes,
            )
            self._dropped_since_report = 0

    # --- shutdown --------------------------------------------------------------------------------

    async def close(self, deadline: float) -> None:
        """Ship what is buffered until `deadline` (loop time), then drop the rest and return."""
        if self._attached:
            remove_sink(self.sink)
            self._attached = False
        await self._cancel()
        if not self.enabled or not self.buffer:
            return
        token = _shipping.set(True)
        try:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining > 0:
                try:
                    async with asyncio.timeout(remaining):
                        await self._ship_safely(remaining, FINAL_ATTEMPTS)
                except TimeoutError:
                    pass
        finally:
            _shipping.reset(token)
        if self.buffer:
            self._drop("shutdown", len(self.buffer))
            log.warning(
                "log events not shipped before the shutdown deadline",
                dropped=len(self.buffer),
                last_error=self.last_error,
            )
            self.buffer.clear()
            self.buffered_bytes = 0

    async def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def describe(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "log_group": self._group or None,
            "log_stream": self._stream or None,
            "buffered_events": len(self.buffer),
            "buffered_bytes": self.buffered_bytes,
            "put_log_events_calls": self.calls,
            "last_shipped_at": self.last_shipped_at,
            "last_error": self.last_error,
        }
