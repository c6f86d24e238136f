"""The PutLogEvents rules, exactly, as pure functions over a buffer of events.

A batch holds at most 10,000 events and at most 1,048,576 bytes, counting each event's UTF-8
message plus 26 bytes; its newest event is at most 24 hours after its oldest; it is sorted by
timestamp. Events more than 2 hours in the future or older than 14 days (or than the log group's
retention) would be rejected, so they are dropped before sending and counted. An event longer
than the largest CloudWatch accepts is cut at a character boundary and ends in `[Truncated...]`.
Sequence tokens are not used (CloudWatch ignores them since 2023).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

EVENT_OVERHEAD = 26
"""Bytes CloudWatch adds to each event's message when it counts a batch."""
MAX_BATCH_BYTES = 1_048_576
MAX_BATCH_EVENTS = 10_000
MAX_SPAN_MS = 24 * 3600 * 1000
MAX_FUTURE_MS = 2 * 3600 * 1000
MAX_AGE_MS = 14 * 24 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
TRUNCATED = "[Truncated...]"


@dataclass(frozen=True, slots=True)
class LogEvent:
    timestamp: int
    """Milliseconds since the epoch."""
    message: str
    size: int
    """UTF-8 bytes of the message plus the 26 bytes of overhead."""


def make_event(timestamp: int, message: str, max_bytes: int = 262_144) -> tuple[LogEvent, bool]:
    """An event whose size (overhead included) is at most `max_bytes`; True when it was cut."""
    encoded = message.encode("utf-8")
    limit = max_bytes - EVENT_OVERHEAD
    if len(encoded) <= limit:
        return LogEvent(timestamp, message, len(encoded) + EVENT_OVERHEAD), False
    keep = encoded[: limit - len(TRUNCATED)].decode("utf-8", errors="ignore")
    cut = keep + TRUNCATED
    return LogEvent(timestamp, cut, len(cut.encode("utf-8")) + EVENT_OVERHEAD), True


@dataclass(frozen=True, slots=True)
class Batch:
    """One PutLogEvents call's events (sorted), and what was dropped on the way."""

    events: list[LogEvent]
    size: int
    too_new: int = 0
    too_old: int = 0

    @property
    def span_ms(self) -> int:
        return self.events[-1].timestamp - self.events[0].timestamp if self.events else 0


def take_batch(buffer: deque[LogEvent], now_ms: int, max_age_ms: int = MAX_AGE_MS) -> Batch:
    """Remove and return the next batch from the front of `buffer` (arrival order).

    Events that CloudWatch would refuse for their age are removed and counted instead. The batch
    stops before the event that would break a limit; that event starts the next one.
    """
    events: list[LogEvent] = []
    size = too_new = too_old = 0
    oldest_allowed = now_ms - max_age_ms
    newest_allowed = now_ms + MAX_FUTURE_MS
    low = high = 0
    while buffer:
        event = buffer[0]
        if event.timestamp > newest_allowed:
            buffer.popleft()
            too_new += 1
            continue
        if event.timestamp < oldest_allowed:
            buffer.popleft()
            too_old += 1
            continue
        if len(events) == MAX_BATCH_EVENTS or size + event.size > MAX_BATCH_BYTES:
            break
        if events:
            new_low, new_high = min(low, event.timestamp), max(high, event.timestamp)
            if new_high - new_low > MAX_SPAN_MS:
                break
            low, high = new_low, new_high
        else:
            low = high = event.timestamp
        events.append(buffer.popleft())
        size += event.size
    # Stable: events with one timestamp keep the order they were logged in.
    events.sort(key=lambda e: e.timestamp)
    return Batch(events, size, too_new, too_old)
