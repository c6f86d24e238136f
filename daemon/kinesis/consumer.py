"""One shard, read in order: a fetch task fills a bounded buffer, this task processes it.

Promises:
- at most `max_fetches_per_second` GetRecords per second; `idle_interval` after an empty answer
  at the tip; no wait while the shard is behind (MillisBehindLatest > 0);
- throttling (ProvisionedThroughputExceededException) and other retryable errors back off with
  capped exponential delays and jitter; MillisBehindLatest keeps its last value meanwhile;
- an expired iterator is replaced by one AFTER the last sequence number fetched into the buffer:
  no gap, no duplicate;
- the buffer is bounded in records (exactly: each GetRecords asks for at most the free room) and
  bytes (at most one response over); when it is full, fetching pauses; nothing is ever dropped;
- records reach the handlers one at a time in shard order; a checkpoint covers only records the
  handlers finished (and, for a buffering handler such as the archive, only records its flush
  made durable); checkpoints are written every `every_records` records or `every_seconds`, at the
  end of the shard (`SHARD_END`) and on a graceful stop;
- stopped (the daemon stops, or another daemon asked for the shard's lease), it stops fetching at
  once, finishes the record in hand, flushes the sinks and writes its checkpoint;
- cancelled (the lease was lost), it stops at once and writes nothing;
- it never holds the event loop for more than `YIELD_EVERY` of handling, even when the handler
  never awaits (the lease renewals and the other shards must run).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Literal

from daemon.base.awserrors import describe_error, error_code, is_throttle
from daemon.base.retry import Attempts, Backoff
from daemon.base.stop import StopToken
from daemon.config.kinesis import KinesisReaderConfig
from daemon.core.shards import ShardInfo, stream_args
from daemon.handlers.base import BufferingHandler, Handler
from daemon.kinesis.checkpoints import (
    SHARD_END,
    Checkpoint,
    CheckpointStore,
    iterator_args,
)
from daemon.kinesis.records import Unit, units

Outcome = Literal["ended", "stopped"]
_END = object()
YIELD_EVERY = 0.02
"""Seconds of handling after which a shard lets the event loop run others (a handler that never
awaits would otherwise hold it for a whole buffer: lease renewals, other shards, health)."""


class ShardBuffer:
    """Fetched batches waiting for the handlers, bounded by records and bytes (one producer,
    one consumer)."""

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.records = 0
        self.bytes = 0
        self._items: deque[Any] = deque()
        self._not_empty = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def full(self) -> bool:
        return self.records >= self.max_records or self.bytes >= self.max_bytes

    async def room(self) -> int:
        """Wait until there is room; return how many records fit."""
        while self.full():
            self._room.clear()
            await self._room.wait()
        return self.max_records - self.records

    def put(self, item: Any, records: int = 0, size: int = 0) -> None:
        self._items.append((item, records, size))
        self.records += records
        self.bytes += size
        self._not_empty.set()

    async def get(self, timeout: float | None) -> tuple[Any, int, int] | None:
        """The oldest item, or None after `timeout` seconds without one."""
        if not self._items:
            self._not_empty.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._not_empty.wait()
            except TimeoutError:
                return None
            if not self._items:
                return None
        item: tuple[Any, int, int] = self._items.popleft()
        return item

    def wake(self) -> None:
        """Wake a waiting `get` (it then returns None): the consumer is stopping."""
        self._not_empty.set()

    def done(self, records: int, size: int) -> None:
        self.records -= records
        self.bytes -= size
        if not self.full():
            self._room.set()


class ShardMetrics:
    """The series one shard updates (created once; the hot path only adds)."""

    def __init__(self, metrics: Any, reader: str, shard: str) -> None:
        labels = {"reader": reader}
        self.records = metrics.counter(
            "awsd_kinesis_records_total", "Records handed to handlers", ("reader",)
        ).labels(**labels)
        self.bytes = metrics.counter(
            "awsd_kinesis_bytes_total", "Record bytes handed to handlers", ("reader",)
        ).labels(**labels)
        self.fetches = metrics.counter(
            "awsd_kinesis_get_records_total", "GetRecords calls that succeeded", ("reader",)
        ).labels(**labels)
        self.throttles = metrics.counter(
            "awsd_kinesis_throttles_total",
            "GetRecords refused with ProvisionedThroughputExceededException",
            ("reader",),
        ).labels(**labels)
        self.expired = metrics.counter(
            "awsd_kinesis_expired_iterators_total", "Shard iterators that expired", ("reader",)
        ).labels(**labels)
        self.errors = metrics.counter(
            "awsd_kinesis_fetch_errors_total",
            "GetRecords failures other than throttling",
            ("reader",),
        ).labels(**labels)
        self.failures = metrics.counter(
            "awsd_kinesis_handler_failures_total", "Handler failures (each attempt)", ("reader",)
        ).labels(**labels)
        self.skipped = metrics.counter(
            "awsd_kinesis_skipped_total", "Failed records skipped (on_failure = skip)", ("reader",)
        ).labels(**labels)
        self.dropped = metrics.counter(
            "awsd_kinesis_dropped_subrecords_total",
            "KPL sub-records outside the shard's hash range (after a reshard), dropped",
            ("reader",),
        ).labels(**labels)
        self.checkpoints = metrics.counter(
            "awsd_kinesis_checkpoints_total", "Checkpoints written", ("reader",)
        ).labels(**labels)
        per_shard = {"reader": reader, "shard": shard}
        self._behind_family = metrics.gauge(
            "awsd_kinesis_millis_behind_latest",
            "MillisBehindLatest of the last GetRecords (kept through errors)",
            ("reader", "shard"),
        )
        self.behind = self._behind_family.labels(**per_shard)
        self._lag_family = metrics.gauge(
            "awsd_kinesis_checkpoint_lag_records",
            "Records processed since the shard's last checkpoint",
            ("reader", "shard"),
        )
        self.lag = self._lag_family.labels(**per_shard)
        self._buffered_family = metrics.gauge(
            "awsd_kinesis_buffered_records",
            "Records fetched, waiting for the handlers",
            ("reader", "shard"),
        )
        self.buffered = self._buffered_family.labels(**per_shard)
        self._labels = per_shard

    def forget(self) -> None:
        """Stop exporting the per-shard series (the shard ended or moved to another daemon)."""
        for family in (self._behind_family, self._lag_family, self._buffered_family):
            family.remove(**self._labels)


class ShardConsumer:
    """Reads one shard from `start` until its end or a stop (see the module docstring)."""

    def __init__(
        self,
        *,
        reader: str,
        stream: str,
        shard: ShardInfo,
        cfg: KinesisReaderConfig,
        clients: Any,
        handlers: list[Handler],
        store: CheckpointStore,
        start: Checkpoint,
        metrics: Any,
        log: Any,
        stop: StopToken,
    ) -> None:
        self.reader = reader
        self.stream = stream
        """The stream's AWS name or ARN."""
        self.shard = shard
        self.cfg = cfg
        self.clients = clients
        self.plain = [h for h in handlers if not isinstance(h, BufferingHandler)]
        self.sinks = [h for h in handlers if isinstance(h, BufferingHandler)]
        self.store = store
        self.start = start
        self.log = log.bind(shard=shard.id)
        self.stop = stop
        self.m = ShardMetrics(metrics, reader, shard.id)
        self.buffer = ShardBuffer(cfg.buffer_records, cfg.buffer_bytes)
        self.backoff = Backoff(0.2, cfg.retry_max)
        self.state = "starting"
        self.fetched: str | None = None
        """Sequence number of the last Kinesis record put into the buffer."""
        self.handled: Checkpoint | None = None
        """Position after the last record every handler took (not yet durable for sinks)."""
        self.done: Checkpoint | None = None
        """Position after the last record fully processed (what the next checkpoint writes)."""
        self.saved: Checkpoint = start
        self.since_checkpoint = 0
        self.last_error: str | None = None
        self._last_save = 0.0
        self._skip_sub = start.subsequence if start.is_sequence else 0
        self._loop = asyncio.get_running_loop()
        self._arn = {"StreamARN": stream} if stream.startswith("arn:") else {}
        self._deadline: float | None = None
        self._timed_out = False
        self._yielded = 0.0

    # --- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        self._last_save = loop.time()
        fetcher = asyncio.create_task(self._fetch(), name=f"kinesis-fetch:{self.shard.id}")
        watcher = asyncio.create_task(self._wake_on_stop())
        me = asyncio.current_task()
        assert me is not None
        watchdog = asyncio.create_task(self._watchdog(me))
        try:
            outcome = await self._process(fetcher)
        finally:
            helpers = (fetcher, watcher, watchdog)
            for task in helpers:
                task.cancel()
            # asyncio.wait never raises for its tasks' ends, so a cancellation of this task that
            # arrives meanwhile still propagates (suppressing CancelledError here once lost the
            # reader's "lease lost" cancel, and the shard kept running).
            await asyncio.wait(helpers)
            for task in helpers:
                if not task.cancelled() and task.exception() is not None:
                    self.log.warning(
                        "shard helper task failed",
                        shard=self.shard.id,
                        error=repr(task.exception()),
                    )
            self.m.buffered.set(0)
        if outcome == "ended":
            self.state = "ended"
            return outcome
        await self._stop_gracefully()
        self.state = "stopped"
        return outcome

    async def _wake_on_stop(self) -> None:
        await self.stop.wait()
        self.buffer.wake()

    async def _stop_gracefully(self) -> None:
        """Flush the sinks and write the last checkpoint, within the stop deadline."""
        try:
            async with asyncio.timeout(self.stop.remaining(10.0)):
                for sink in self.sinks:
                    await sink.flush(self.shard.id)
                if self.sinks and self.handled is not None:
                    self.done = self.handled
                await self._save()
        except TimeoutError:
            self.log.warning("final checkpoint not written before the stop deadline")
        except Exception as exc:  # noqa: BLE001 - the records are then simply read again
            self.log.warning("final checkpoint failed", error=describe_error(exc))

    # --- fetching --------------------------------------------------------------------------------

    async def _fetch(self) -> None:
        kinesis = await self.clients.client("kinesis")
        loop = asyncio.get_running_loop()
        tries = Attempts(self.backoff)
        iterator = await self._iterator(kinesis, tries)
        pace = 1.0 / self.cfg.max_fetches_per_second
        next_call = loop.time()
        while True:
            wait = next_call - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            room = await self.buffer.room()
            next_call = loop.time() + pace
            try:
                response = await kinesis.get_records(
                    ShardIterator=iterator, Limit=min(self.cfg.max_records, room), **self._arn
                )
            except Exception as exc:  # noqa: BLE001 - classified below; the loop never dies
                iterator = await self._fetch_failed(kinesis, exc, tries, iterator)
                continue
            tries.reset()
            self.m.fetches.inc()
            behind = response.get("MillisBehindLatest")
            if behind is not None:
                self.m.behind.set(behind)
            records = response.get("Records") or []
            if records:
                size = sum(len(r["Data"]) for r in records)
                self.buffer.put(records, len(records), size)
                self.m.buffered.set(self.buffer.records)
                self.fetched = records[-1]["SequenceNumber"]
            iterator = response.get("NextShardIterator")
            if iterator is None or (not records and self.shard.closed and not behind):
                # The end of a closed shard: a null iterator (AWS), or a closed shard with
                # nothing left and nothing behind (endpoints that keep handing out iterators).
                self.buffer.put(_END)
                return
            if not records and not behind:
                self.state = "idle"
                await asyncio.sleep(self.cfg.idle_interval)
            else:
                # An empty page while behind (Kinesis skips through sparse or trimmed data this
                # way) is no reason to idle: only the GetRecords pace applies.
                self.state = "reading"

    async def _fetch_failed(
        self, kinesis: Any, exc: Exception, tries: Attempts, iterator: str
    ) -> str:
        code = error_code(exc)
        self.last_error = describe_error(exc)
        if code == "ExpiredIteratorException":
            self.m.expired.inc()
            self.log.info(
                "shard iterator expired; resuming after the last fetched record", after=self.fetched
            )
            return await self._iterator(kinesis, tries)
        if is_throttle(exc):
            self.m.throttles.inc()
            self.state = "throttled"
        else:
            self.m.errors.inc()
            self.state = "retrying"
            self.log.warning("GetRecords failed; retrying", error=self.last_error)
        await asyncio.sleep(tries.next_delay())
        return iterator

    async def _iterator(self, kinesis: Any, tries: Attempts) -> str:
        """A shard iterator right after what was fetched (or after the start checkpoint)."""
        while True:
            if self.fetched is not None:
                args: dict[str, Any] = {
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                    "StartingSequenceNumber": self.fetched,
                }
            else:
                args = iterator_args(
                    self.start,
                    shard=self.shard.id,
                    at_timestamp=self.cfg.at_timestamp,
                    start_sequence_numbers=self.cfg.start_sequence_numbers,
                )
            try:
                got = await kinesis.get_shard_iterator(
                    **stream_args(self.stream), ShardId=self.shard.id, **args
                )
            except Exception as exc:  # noqa: BLE001 - retried with backoff; stop cancels us
                self.last_error = describe_error(exc)
                if is_throttle(exc):
                    self.m.throttles.inc()
                else:
                    self.log.warning("GetShardIterator failed; retrying", error=self.last_error)
                await asyncio.sleep(tries.next_delay())
                continue
            return str(got["ShardIterator"])

    # --- processing ------------------------------------------------------------------------------

    async def _process(self, fetcher: asyncio.Task[None]) -> Outcome:
        loop = asyncio.get_running_loop()
        while not self.stop.stopping:
            if fetcher.done() and not self.buffer._items:
                fetcher.result()  # surfaces a crash of the fetch task
            got = await self.buffer.get(self._wake_in(loop.time()))
            if got is None:
                await self._maybe_commit(loop.time())
                continue
            item, count, size = got
            if item is _END:
                return await self._end_of_shard()
            try:
                if not await self._process_batch(item):
                    return "stopped"
            finally:
                self.buffer.done(count, size)
                self.m.buffered.set(self.buffer.records)
        return "stopped"

    def _wake_in(self, now: float) -> float:
        waits = [self._last_save + self.cfg.checkpoints.every_seconds - now]
        for sink in self.sinks:
            due = sink.due_in(self.shard.id, now)
            if due is not None:
                waits.append(due)
        return max(0.05, min(waits))

    async def _process_batch(self, batch: list[dict[str, Any]]) -> bool:
        """Hand a fetched batch to the handlers; False when a stop interrupted it."""
        loop = asyncio.get_running_loop()
        for raw in batch:
            if self.stop.stopping:
                return False
            batch_units, dropped = units(
                raw, stream=self.stream, shard=self.shard, decoder=self.cfg.decoder
            )
            if dropped:
                self.m.dropped.inc(dropped)
                self.log.warning(
                    "KPL sub-records belong to another shard (aggregated before a reshard); "
                    "dropped",
                    sequence=raw["SequenceNumber"],
                    dropped=dropped,
                )
            if self._skip_sub:
                batch_units = self._skip_resumed(raw["SequenceNumber"], batch_units)
            if not batch_units:  # nothing for us in it: it still counts as processed
                self._mark(Checkpoint(raw["SequenceNumber"]))
            for unit in batch_units:
                if not await self._handle(unit):
                    return False
                self.m.records.inc()
                self.m.bytes.inc(unit.size)
                self._mark(
                    Checkpoint(unit.sequence)
                    if unit.last
                    else Checkpoint(unit.sequence, unit.sub + 1)
                )
            now = loop.time()
            await self._maybe_commit(now)
            if now - self._yielded >= YIELD_EVERY:
                await asyncio.sleep(0)
                self._yielded = loop.time()
        return True

    def _skip_resumed(self, sequence: str, batch_units: list[Unit]) -> list[Unit]:
        """Resuming inside an aggregated record: its first sub-records were done already."""
        if sequence != self.start.position:
            self._skip_sub = 0
            return batch_units
        skip, self._skip_sub = self._skip_sub, 0
        return [u for u in batch_units if u.sub >= skip]

    def _mark(self, position: Checkpoint) -> None:
        self.handled = position
        if not self.sinks:
            self.done = position
        self.since_checkpoint += 1
        self.m.lag.set(self.since_checkpoint)

    async def _handle(self, unit: Unit) -> bool:
        """Run every handler on one record, applying the failure policy; False on stop."""
        tries: Attempts | None = None
        while True:
            try:
                for handler in self.plain:
                    await self._call(handler, unit)
                for sink in self.sinks:
                    await sink.accept(unit.record, self.shard.id)
                return True
            except Exception as exc:  # noqa: BLE001 - a handler failure is the record's, not ours
                tries = tries or Attempts(Backoff(0.5, self.cfg.retry_max))
                self.m.failures.inc()
                error = "handler timed out" if isinstance(exc, TimeoutError) else str(exc)
                if self.cfg.on_failure == "skip":
                    self.m.skipped.inc()
                    self.log.error("record failed; skipped", record=unit.record.id, error=error)
                    return True
                delay = tries.next_delay()
                self.state = "handler_retrying"
                self.last_error = f"record {unit.record.id}: {error}"
                self.log.warning(
                    "record failed; retrying",
                    record=unit.record.id,
                    error=error,
                    attempt=tries.failures,
                    retry_in_s=round(delay, 3),
                )
                if not await self.stop.sleep(delay):
                    return False

    async def _call(self, handler: Handler, unit: Unit) -> None:
        """One handler call under `handler_timeout`. The deadline is watched by `_watchdog`
        rather than a timer per call (asyncio.timeout per record cost a third of the reader's own
        CPU); past it, the processing task is cancelled and the call raises TimeoutError."""
        self._deadline = self._loop.time() + self.cfg.handler_timeout
        try:
            await handler.handle(unit.record)
        except asyncio.CancelledError:
            if not self._timed_out:
                raise
            self._timed_out = False
            task = asyncio.current_task()
            if task is not None and task.uncancel() > 0:
                raise  # somebody else cancelled us too (lease lost, stop): that one must win
            raise TimeoutError(f"handler took longer than {self.cfg.handler_timeout}s") from None
        finally:
            self._deadline = None

    async def _watchdog(self, processing: asyncio.Task[Any]) -> None:
        interval = min(0.5, self.cfg.handler_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            deadline = self._deadline
            if deadline is not None and not self._timed_out and self._loop.time() >= deadline:
                self._timed_out = True
                processing.cancel()

    async def _maybe_commit(self, now: float) -> None:
        """Flush due sinks, and write a checkpoint when enough was processed or time passed."""
        for sink in self.sinks:
            if sink.ready(self.shard.id, now):
                if not await self._flush(sink):
                    return
                self.done = self.handled
                await self._save()
        if self.done is None or self.done == self.saved:
            return
        if (
            self.since_checkpoint >= self.cfg.checkpoints.every_records
            or now - self._last_save >= self.cfg.checkpoints.every_seconds
        ):
            await self._save()

    async def _flush(self, sink: BufferingHandler) -> bool:
        """Flush a sink, retrying with backoff; False on stop."""
        tries = Attempts(Backoff(0.5, self.cfg.retry_max))
        while True:
            try:
                await sink.flush(self.shard.id)
                return True
            except Exception as exc:  # noqa: BLE001 - kept and retried; never checkpointed
                delay = tries.next_delay()
                self.last_error = f"{sink.name or 'sink'} flush: {describe_error(exc)}"
                self.state = "flush_retrying"
                self.log.warning(
                    "buffered records not written yet; retrying",
                    sink=sink.name,
                    error=describe_error(exc),
                    retry_in_s=round(delay, 3),
                )
                if not await self.stop.sleep(delay):
                    return False

    async def _save(self) -> None:
        if self.done is None or self.done == self.saved:
            self._last_save = asyncio.get_running_loop().time()
            return
        await self.store.save(self.shard.id, self.done)
        self.saved = self.done
        self.since_checkpoint = 0
        self._last_save = asyncio.get_running_loop().time()
        self.m.checkpoints.inc()
        self.m.lag.set(0)

    async def _end_of_shard(self) -> Outcome:
        for sink in self.sinks:
            if not await self._flush(sink):
                return "stopped"
        self.done = Checkpoint(SHARD_END)
        await self._save()
        self.log.info("shard read to its end", children_may_start=True)
        return "ended"

    def health(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "millis_behind_latest": self.m.behind.value,
            "buffered": self.buffer.records,
            "checkpoint": str(self.saved),
            "since_checkpoint": self.since_checkpoint,
            "last_error": self.last_error,
        }
