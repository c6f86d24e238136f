"""The `log` handler: one structured log event per record (a `print(message)` made structured),
or, with `summary`, one `records` event per window for a stream too busy to read line by line.

A summary drops no fact a person reads the per-record lines for: it counts the records, says
which shards or queues they came from, their first and last ids, how many partition keys and
body kinds, and shows the last record's body whole (in the JSON output; the console cuts long
values). It is logged when the window holds
`summary.records` records, `summary.seconds` after its first record (a timer on the event loop,
so a stream that goes quiet still gets its summary), and when the handler closes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from daemon.config.handlers import LogHandlerConfig, LogSummaryConfig
from daemon.core.logs import get_logger
from daemon.handlers.base import Handler, Record


class LogHandler(Handler):
    def __init__(
        self, cfg: LogHandlerConfig, log: Any = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.cfg = cfg
        self.log = log or get_logger()
        self._summary = Summary(cfg.summary, clock) if cfg.summary is not None else None

    async def handle(self, record: Record) -> None:
        if self._summary is None:
            self._emit("record", self._fields(record))
            return
        done = self._summary.add(record, self._fields(record))
        if done is not None:
            self._emit("records", done)
        if self._summary.count == 1:  # a new window
            self._summary.arm(self._flush)

    async def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        done = self._summary.take() if self._summary is not None else None
        if done is not None:
            self._emit("records", done)

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        getattr(self.log, self.cfg.level)(event, **fields)

    def _fields(self, record: Record) -> dict[str, Any]:
        body: Any = record.data if record.data is not None else record.text
        if body is None:
            body = f"<{len(record.body)} bytes>"
        elif isinstance(body, str) and len(body) > self.cfg.max_chars:
            body = body[: self.cfg.max_chars] + f"...[{len(body) - self.cfg.max_chars} more]"
        return {
            "source": record.source,
            "id": record.id,
            "record_kind": record.kind,
            "body": body,
            "attributes": record.attributes or None,
            **record.meta,
        }


class Summary:
    """The records of the current window, summarised; `records` events carry `count`,
    `seconds`, `from` (records per shard or queue), `first_id`, `last_id`, `partition_keys`
    (how many distinct), `kinds` (when more than one) and `last` (the last body)."""

    def __init__(self, cfg: LogSummaryConfig, clock: Callable[[], float] | None = None) -> None:
        self.cfg = cfg
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self._started = 0.0
        self._from: Counter[str] = Counter()
        self._kinds: Counter[str] = Counter()
        self._keys: set[str] = set()
        self._first_id = ""
        self._last: dict[str, Any] = {}

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def add(self, record: Record, fields: dict[str, Any]) -> dict[str, Any] | None:
        """Count one record; the summary when the window is full (or over), else None."""
        done = None
        if self.count and self._now() - self._started >= self.cfg.seconds:
            done = self.take()  # the timer did not fire yet (a busy loop, an injected clock)
        if not self.count:
            self._started = self._now()
            self._first_id = record.id
        self.count += 1
        meta = record.meta
        self._from[str(meta.get("shard") or meta.get("queue") or record.source)] += 1
        self._kinds[record.kind] += 1
        key = meta.get("partition_key") or meta.get("group_id")
        if key is not None:
            self._keys.add(str(key))
        self._last = fields
        if done is None and self.count >= self.cfg.records:
            done = self.take()
        return done

    def arm(self, flush: Callable[[], None]) -> None:
        """Log the window's summary `seconds` after its first record, whatever comes next."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.cfg.seconds, flush)

    def take(self) -> dict[str, Any] | None:
        """The window's summary (None when empty), and a new window."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.count:
            return None
        last = self._last
        summary = {
            "count": self.count,
            "seconds": round(max(0.0, self._now() - self._started), 1),
            "from": dict(self._from),
            "first_id": self._first_id,
            "last_id": last.get("id"),
            "partition_keys": len(self._keys) or None,
            "kinds": dict(self._kinds) if len(self._kinds) > 1 else None,
            "last": last.get("body"),
        }
        self._reset()
        return summary
