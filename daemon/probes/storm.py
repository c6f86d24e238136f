"""Storm control: one notification instead of fifty when the problem is not the endpoints.

Two mechanisms:
- `Grouper` holds notices for `group_window` seconds after the first one and then releases
  them together, so alerts that open within the window leave as one notification per target
  ("3 endpoints DOWN: a, b, c"). Notices of different events are grouped separately.
- `ConnectivityGuard` checks the probe host's own connectivity (URLs that must always answer).
  When all of them fail, the host is offline: per-endpoint notices are held (their alerts stay
  unannounced and are asked for again once the host is back) and a single "probe host offline"
  notice goes out instead (it waits in the durable outbox until the network returns). Before a
  group of alerts is released, the guard checks again right away, which closes the race where
  endpoints fail a little before the guard's own schedule notices the outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from daemon.probes.alerts import Event, Notice
from daemon.probes.result import ProbeResult


@dataclass
class Grouper:
    """Collects notices per event for `window` seconds after the first (loop clock)."""

    window: float
    _since: dict[Event, float] = field(default_factory=dict)
    _held: dict[Event, list[Notice]] = field(default_factory=dict)

    def add(self, notice: Notice, now: float) -> None:
        self._held.setdefault(notice.event, []).append(notice)
        self._since.setdefault(notice.event, now)

    def due(self, now: float, *, everything: bool = False) -> list[list[Notice]]:
        """Groups whose window has passed (all of them with `everything`)."""
        ready = [e for e, t in self._since.items() if everything or now - t >= self.window]
        out = []
        for event in ready:
            del self._since[event]
            out.append(self._held.pop(event))
        return out

    def next_due(self) -> float | None:
        return min(self._since.values()) + self.window if self._since else None

    def __len__(self) -> int:
        return sum(len(v) for v in self._held.values())


Check = Callable[[], Awaitable[list[ProbeResult]]]


class ConnectivityGuard:
    """Whether the probe host can reach the outside world, from a set of reference checks."""

    def __init__(
        self, check: Check, *, offline_after: int = 2, recheck_within: float = 5.0
    ) -> None:
        self._check = check
        self.offline_after = offline_after
        """Consecutive failed rounds before declaring the host offline (one blip is not)."""
        self.recheck_within = recheck_within
        self.online = True
        self.failed_rounds = 0
        self.last_round: list[ProbeResult] = []
        self.last_checked: float | None = None
        self._lock = asyncio.Lock()

    async def round(self, now: float) -> Event | None:
        """Check once; return HOST_OFFLINE / HOST_ONLINE when the state changes."""
        async with self._lock:
            if self.last_checked is not None and now - self.last_checked < self.recheck_within:
                return None
            results = await self._check()
            self.last_round, self.last_checked = results, now
            if any(r.success for r in results):
                self.failed_rounds = 0
                if not self.online:
                    self.online = True
                    return Event.HOST_ONLINE
                return None
            self.failed_rounds += 1
            if self.online and self.failed_rounds >= self.offline_after:
                self.online = False
                return Event.HOST_OFFLINE
            return None

    async def confirm_online(self, now: float) -> tuple[bool, Event | None]:
        """Before releasing alerts: check now (unless just checked); offline means hold them.
        A failing fresh check counts as offline at once, since alerts are already waiting."""
        change = await self.round(now)
        if self.online and self.failed_rounds > 0:
            self.online = False
            change = Event.HOST_OFFLINE
        return self.online, change

    def describe(self) -> dict[str, object]:
        return {
            "online": self.online,
            "failed_rounds": self.failed_rounds,
            "last": [
                {"target": r.target, "success": r.success, "detail": r.detail}
                for r in self.last_round
            ],
        }


def host_notice(event: Event, now: float, detail: str) -> Notice:
    return Notice(
        event=event,
        endpoint="*",
        at=now,
        result=None,
        opened_at=None,
        reason="connectivity" if event is Event.HOST_OFFLINE else None,
        detail=detail,
    )
