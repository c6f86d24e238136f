"""The SNS publisher: readings and events in, durable outbox out.

Sources:
- **readings**: a file (a Pi's `/sys/class/thermal/thermal_zone0/temp`) or a command, every
  `interval` seconds, published as JSON `{"name", "value", "unit", "host", "env", "time"}`. The
  schedule is start to start: a slow reading does not drift the next one, and a tick missed
  because a reading took too long is skipped (counted and logged), never made up in a burst;
  each reading runs on its own, so a hung command delays nothing else;
- **events**: `PublishRequest`s other workers put on the event bus (`daemon/sns/publishing.py`);
- **local ingest** (`awsd publish`, POST /publish) is served by the health server straight into
  the outbox; this worker only has to be configured for it.
Everything goes into the durable outbox, which the `outbox` worker delivers with PublishBatch
(`daemon/outbox/senders/sns.py`). On stop, events already taken from the bus are put into the
outbox before the worker returns.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from typing import Any

from daemon.base.clock import iso_utc
from daemon.config.messaging import ReadingConfig, SnsPublisherConfig
from daemon.config.partition import PartitionKeyConfig
from daemon.core.events import Event, Subscription
from daemon.core.programs import program_env, run_program
from daemon.outbox import InvalidMessage, Message, OutboxFull
from daemon.outbox.producer import kinesis_message
from daemon.services import Services
from daemon.sns.publishing import (
    PublishMetrics,
    PublishRequest,
    notifiable_events,
    notification,
    resolved,
)
from daemon.worker import Worker, WorkerContext

MAX_READING_BYTES = 64 * 1024
BEAT = 5.0


class ReadingFailed(Exception):
    """A reading could not be taken (file missing, command failed); logged, counted, retried."""


class ReadingState:
    def __init__(self) -> None:
        self.published = 0
        self.last_value: Any = None
        self.last_at: float | None = None
        self.last_error: str | None = None
        self.missed_ticks = 0


class SnsPublisher(Worker):
    def __init__(self, cfg: SnsPublisherConfig, env: str, services: Services) -> None:
        self.cfg = cfg
        self.env = env
        self.services = services
        self.host = cfg.host or socket.gethostname()
        self.m = PublishMetrics(services.metrics)
        self.readings = {name: ReadingState() for name in cfg.readings}
        self.events_published = 0
        self.events_refused = 0
        self._reading_errors = services.metrics.counter(
            "awsd_publish_reading_errors_total", "Readings that could not be taken", ("reading",)
        )
        self._missed = services.metrics.counter(
            "awsd_publish_reading_ticks_missed_total",
            "Reading ticks skipped because the previous reading overran its interval",
            ("reading",),
        )

    async def run(self, ctx: WorkerContext) -> None:
        sub = None
        tasks: list[asyncio.Task[None]] = []
        known = notifiable_events()
        types = [known[name] for name in self.cfg.notify if name in known]
        if self.cfg.events:
            types.append(PublishRequest)
        if types:
            sub = self.services.events.subscribe(
                *types, maxsize=self.cfg.event_queue, name=ctx.name
            )
            tasks.append(asyncio.create_task(self._events(ctx, sub), name="sns-events"))
        for name, reading in self.cfg.readings.items():
            tasks.append(
                asyncio.create_task(self._reading_loop(ctx, name, reading), name=f"sns:{name}")
            )
        try:
            while await ctx.sleep(BEAT):
                for task in tasks:
                    if task.done():
                        task.result()  # a source that died takes the worker down: restarted
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if sub is not None:
                await self._drain(ctx, sub)
                sub.close()

    # --- events ----------------------------------------------------------------------------------

    async def _events(self, ctx: WorkerContext, sub: Subscription) -> None:
        while True:
            await self._publish_event(ctx, await sub.get())

    async def _drain(self, ctx: WorkerContext, sub: Subscription) -> None:
        """Put the events already taken from the bus into the outbox before stopping."""
        left: list[Event] = []
        while not sub.queue.empty():
            left.append(sub.queue.get_nowait())
        if not left:
            return
        try:
            async with asyncio.timeout(ctx.stop.remaining(5.0)):
                for event in left:
                    await self._publish_event(ctx, event)
        except TimeoutError:
            ctx.log.error("events lost at the shutdown deadline", lost=len(left))

    async def _publish_event(self, ctx: WorkerContext, event: Event) -> None:
        try:
            if isinstance(event, PublishRequest):
                message = event.to_message(self.cfg.topic, origin=event.source or "events")
            else:
                topic = self.cfg.notify[type(event).__name__]
                message = notification(event, topic, origin=event.source or "events")
            await self.services.outbox.put(await resolved(self.services, message))
        except (InvalidMessage, OutboxFull) as exc:
            reason = "full" if isinstance(exc, OutboxFull) else "invalid"
            self.events_refused += 1
            self.m.refused.labels(source="event", reason=reason).inc()
            ctx.log.error(
                "publish request refused",
                requested_by=event.source,
                event_type=type(event).__name__,
                error=str(exc),
            )
            return
        self.events_published += 1
        self.m.accepted.labels(source="event").inc()

    # --- readings --------------------------------------------------------------------------------

    async def _reading_loop(self, ctx: WorkerContext, name: str, reading: ReadingConfig) -> None:
        loop = asyncio.get_running_loop()
        state = self.readings[name]
        next_at = loop.time()
        while not ctx.stopping:
            if not await ctx.stop.sleep(next_at - loop.time()):
                return
            await self._take(ctx, name, reading, state)
            next_at, missed = next_tick(next_at, reading.interval, loop.time())
            if missed:
                state.missed_ticks += missed
                self._missed.labels(reading=name).inc(missed)
                ctx.log.warning(
                    "reading took longer than its interval; ticks skipped",
                    reading=name,
                    skipped=missed,
                    interval_s=reading.interval,
                )

    async def _take(
        self, ctx: WorkerContext, name: str, reading: ReadingConfig, state: ReadingState
    ) -> None:
        try:
            raw = await self._read(reading, reading.timeout)
        except ReadingFailed as exc:
            self._reading_errors.labels(reading=name).inc()
            if state.last_error != str(exc):  # log changes, not every repetition
                ctx.log.warning("reading failed", reading=name, error=str(exc))
            state.last_error = str(exc)
            return
        if state.last_error is not None:
            ctx.log.info("reading recovered", reading=name)
            state.last_error = None
        value = parse_value(raw, reading.scale)
        message = await self._message(ctx, name, reading, value)
        try:
            await self.services.outbox.put(message)
        except (InvalidMessage, OutboxFull) as exc:
            reason = "full" if isinstance(exc, OutboxFull) else "invalid"
            self.m.refused.labels(source="reading", reason=reason).inc()
            ctx.log.error("reading not published", reading=name, error=str(exc))
            return
        self.m.accepted.labels(source="reading").inc()
        state.published += 1
        state.last_value, state.last_at = value, time.time()
        ctx.beat()

    async def _message(
        self, ctx: WorkerContext, name: str, reading: ReadingConfig, value: Any
    ) -> Message:
        body = self._body(name, reading, value)
        if reading.stream is not None:
            stream = await self.services.targets.aws_name("streams", reading.stream)
            key = reading.partition_key or PartitionKeyConfig(source="fixed", value=name)
            return kinesis_message(stream, body["message"], key=key, origin=ctx.name)
        topic = await self.services.targets.aws_name(
            "topics", reading.topic or self.cfg.topic or ""
        )
        return Message("sns", topic, body, ctx.name)

    def _body(self, name: str, reading: ReadingConfig, value: Any) -> dict[str, Any]:
        now = time.time()
        document: dict[str, Any] = {"name": name, "value": value}
        if reading.unit:
            document["unit"] = reading.unit
        document.update(
            host=self.host,
            env=self.env,
            time=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(now % 1 * 1000):03d}Z",
        )
        body: dict[str, Any] = {"message": json.dumps(document, separators=(",", ":"))}
        if reading.subject:
            body["subject"] = reading.subject
        if reading.attributes:
            body["attributes"] = dict(reading.attributes)
        body["group_id"] = reading.group_id or name
        return body

    async def _read(self, reading: ReadingConfig, timeout: float) -> str:
        if reading.file is not None:
            path = reading.file
            try:
                async with asyncio.timeout(timeout):
                    data = await asyncio.to_thread(_read_file, path)
            except TimeoutError:
                raise ReadingFailed(f"reading {path} took more than {timeout:g}s") from None
            except OSError as exc:
                raise ReadingFailed(f"cannot read {path}: {exc.strerror or exc}") from None
        else:
            assert reading.command is not None
            try:
                result = await run_program(
                    reading.command,
                    timeout=timeout,
                    env=program_env(),
                    max_output=MAX_READING_BYTES,
                )
            except OSError as exc:
                raise ReadingFailed(
                    f"cannot run {reading.command[0]!r}: {exc.strerror or exc}"
                ) from None
            if not result.ok:
                raise ReadingFailed(f"{reading.command[0]} {result.describe()}")
            data = result.stdout
        text = data.decode("utf-8", "replace").strip()
        if not text:
            raise ReadingFailed("the reading is empty")
        return text

    def health(self) -> dict[str, Any]:
        return {
            "default_topic": self.cfg.topic,
            "events_published": self.events_published,
            "events_refused": self.events_refused,
            "readings": {
                name: {
                    "published": s.published,
                    "last_value": s.last_value,
                    "last_at": iso_utc(s.last_at),
                    "last_error": s.last_error,
                    "missed_ticks": s.missed_ticks,
                }
                for name, s in self.readings.items()
            },
        }


def next_tick(previous: float, interval: float, now: float) -> tuple[float, int]:
    """The tick after `previous` that is still ahead of `now` (start-to-start schedule), and how
    many ticks were skipped because they passed while the reading ran: never made up later."""
    due = previous + interval
    if due > now:
        return due, 0
    missed = math.floor((now - due) / interval) + 1
    return due + missed * interval, missed


def parse_value(text: str, scale: float | None) -> Any:
    """A number when the text is one (scaled), parsed JSON when it is JSON, else the text."""
    try:
        number: float = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            try:
                return json.loads(text)
            except ValueError:
                return text
    if not math.isfinite(number):
        return text
    if scale is not None:
        return round(number * scale, 9)
    return number


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(MAX_READING_BYTES)
