"""Wall-clock time shown to people: ISO 8601 in UTC.

Everything that measures or schedules uses the event loop's monotonic clock; the wall clock is
only for timestamps in logs, `/status` and messages (`time.time()`), written here one way.
"""

from __future__ import annotations

import time


def iso_utc(ts: float | None, *, ms: bool = False) -> str | None:
    """`2026-01-01T12:00:05Z` (or `...05.001Z` with `ms`) for a Unix time; None for None."""
    if ts is None:
        return None
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return text + (f".{int(ts % 1 * 1000):03d}Z" if ms else "Z")
