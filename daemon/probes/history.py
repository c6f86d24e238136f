"""Bounded history per endpoint: recent results for /status, hourly counts for uptime ratios.

Memory stays small at any scale: `history` compact samples per endpoint, plus one (ok, total)
pair per hour for the last 7 days (169 pairs). The hourly counts are saved in the probe state
store, so uptime ratios survive restarts; the book itself lives as long as the process (one per
state file), so a reload that restarts the probe worker keeps every endpoint's history.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from daemon.probes.result import ProbeResult

HOUR = 3600
KEEP_HOURS = 7 * 24 + 1


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    success: bool
    reason: str | None
    latency_ms: int
    status: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "at": round(self.at, 3),
            "success": self.success,
            "reason": self.reason,
            "latency_ms": self.latency_ms,
            "status": self.status,
        }


@dataclass
class EndpointHistory:
    recent: deque[Sample]
    hours: dict[int, list[int]] = field(default_factory=dict)
    """Hour number (epoch // 3600) -> [successes, checks]."""

    def add(self, result: ProbeResult) -> int:
        self.recent.append(
            Sample(
                result.started_at,
                result.success,
                str(result.reason) if result.reason else None,
                result.latency_ms,
                result.status,
            )
        )
        hour = int(result.started_at // HOUR)
        counts = self.hours.setdefault(hour, [0, 0])
        counts[0] += int(result.success)
        counts[1] += 1
        if len(self.hours) > KEEP_HOURS:
            for old in sorted(self.hours)[: len(self.hours) - KEEP_HOURS]:
                del self.hours[old]
        return hour

    def uptime(self, seconds: float, now: float) -> float | None:
        """Share of successful checks in the last `seconds` (by whole hours); None if none."""
        first = int((now - seconds) // HOUR) + 1
        ok = total = 0
        for hour, (good, count) in self.hours.items():
            if hour >= first:
                ok += good
                total += count
        return round(ok / total, 6) if total else None


class HistoryBook:
    """Every endpoint's history; dirty hours are remembered until the store saved them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.endpoints: dict[str, EndpointHistory] = {}
        self.dirty: set[tuple[str, int]] = set()
        self.loaded = False

    def get(self, name: str) -> EndpointHistory:
        history = self.endpoints.get(name)
        if history is None:
            history = EndpointHistory(deque(maxlen=self.size))
            self.endpoints[name] = history
        return history

    def resize(self, size: int) -> None:
        if size != self.size:
            self.size = size
            for history in self.endpoints.values():
                history.recent = deque(history.recent, maxlen=size)

    def add(self, result: ProbeResult) -> None:
        hour = self.get(result.endpoint).add(result)
        self.dirty.add((result.endpoint, hour))

    def forget(self, keep: set[str]) -> list[str]:
        """Drop endpoints no longer configured; return their names."""
        gone = [name for name in self.endpoints if name not in keep]
        for name in gone:
            del self.endpoints[name]
        self.dirty = {d for d in self.dirty if d[0] in keep}
        return gone

    def take_dirty(self) -> list[tuple[str, int, int, int]]:
        rows = []
        for name, hour in self.dirty:
            history = self.endpoints.get(name)
            if history is not None and hour in history.hours:
                ok, total = history.hours[hour]
                rows.append((name, hour, ok, total))
        self.dirty = set()
        return rows


_BOOKS: dict[str, HistoryBook] = {}


def book_for(key: str, size: int) -> HistoryBook:
    """The process's history book for a state file (it outlives worker restarts)."""
    book = _BOOKS.get(key)
    if book is None:
        book = _BOOKS[key] = HistoryBook(size)
    book.resize(size)
    return book
