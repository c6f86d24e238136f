"""Maintenance windows: recurring local times, in an IANA time zone, when alerts are silenced.

A window starts at `start` (wall-clock time in its zone) on each of its `days` and lasts
`duration` seconds of real time. Daylight saving is honoured the way people read a calendar:
"02:30 Europe/Paris" is 02:30 on the wall clock whatever the offset is that day; on the spring
day when 02:30 does not exist the window starts when the clocks jump forward (03:00), and on
the autumn day when 02:30 happens twice it starts at the first one. A window that began the
day before and runs past midnight counts too.
"""

from __future__ import annotations

import math
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from daemon.config.probes import DAYS, MaintenanceWindow


def window_start_times(window: MaintenanceWindow, now: float) -> list[float]:
    """Epoch starts of the occurrences that could cover `now` (today and the days before)."""
    zone = ZoneInfo(window.timezone)
    local = datetime.fromtimestamp(now, zone)
    hour, minute = (int(p) for p in window.start.split(":"))
    back = math.ceil(window.duration / 86400)
    starts = []
    for days_ago in range(back + 1):
        day = local.date() - timedelta(days=days_ago)
        if DAYS[day.weekday()] not in window.days:
            continue
        begin = datetime.combine(day, time(hour, minute), tzinfo=zone)
        starts.append(_resolve_gap(begin, zone).timestamp())
    return starts


def _resolve_gap(begin: datetime, zone: ZoneInfo) -> datetime:
    """A wall time skipped by a spring-forward change starts at the moment the clocks jumped."""
    roundtrip = datetime.fromtimestamp(begin.timestamp(), zone)
    if roundtrip.replace(tzinfo=None) == begin.replace(tzinfo=None):
        return begin
    # In the gap: walk back to the transition (the first instant whose wall time is after it).
    utc = begin.timestamp()
    step = 60.0
    while datetime.fromtimestamp(utc - step, zone).replace(tzinfo=None) > begin.replace(
        tzinfo=None
    ):
        utc -= step
    return datetime.fromtimestamp(utc, zone)


def active(window: MaintenanceWindow, now: float) -> bool:
    return any(start <= now < start + window.duration for start in window_start_times(window, now))


def in_maintenance(windows: list[MaintenanceWindow], now: float) -> bool:
    """Whether any of the windows covers the wall-clock time `now` (epoch seconds)."""
    return any(active(w, now) for w in windows)
