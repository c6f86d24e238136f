"""The alert state machine of one endpoint: when an alert opens, reminds and resolves.

Rules (the Gatus and Uptime Kuma semantics people expect):
- `failure_threshold` consecutive failures open an alert; `success_threshold` consecutive
  successes resolve it; any other result resets the opposite streak.
- An open alert is *announced* once a notification for it was accepted by the durable outbox;
  until then every further failure asks again (an outbox that was full, a notification held while
  the probe host was offline), so an alert is never silently lost and never announced twice.
- Reminders repeat an announced alert every `reminder_interval` (at least 5 minutes).
- A resolution is announced (`send_on_resolved`) only for an alert that was announced.
- During a maintenance window, or while the probe host itself is offline, the machine is not fed
  at all: probing and history go on, streaks and alerts stay as they were, and counting resumes
  after the window.

The machine is pure: it takes results and wall-clock times and returns notices, so tests drive it
through hours of simulated time without waiting. `AlertState` is what `state.py` persists.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from daemon.config.probes import AlertConfig
from daemon.probes.result import ProbeResult


class Event(enum.StrEnum):
    OPEN = "open"
    REMINDER = "reminder"
    RESOLVED = "resolved"
    HOST_OFFLINE = "host_offline"
    HOST_ONLINE = "host_online"


@dataclass
class AlertState:
    """One endpoint's alert, persisted across restarts (JSON in the probe state store)."""

    endpoint: str
    open: bool = False
    announced: bool = False
    """A notification of the open alert was accepted by the outbox (so it is not sent again)."""
    failures: int = 0
    successes: int = 0
    opened_at: float | None = None
    resolved_at: float | None = None
    last_notified_at: float | None = None
    reason: str | None = None
    detail: str = ""
    last_latency_ms: int | None = None
    last_status: int | None = None
    pending: dict[int, str] = field(default_factory=dict)
    """Outbox ids of notifications not yet confirmed by AWS -> the event they carry."""
    last_notification: dict[str, Any] = field(default_factory=dict)
    """The latest notification: event, status (pending, delivered, dead), time."""
    sending: dict[str, Any] = field(default_factory=dict)
    """A notification being handed to the outbox (origin, event, time), saved before the put:
    after a crash in between, the origin tells whether the outbox took it (see the worker)."""
    queued: bool = field(default=False, compare=False)
    """A notice is waiting in the grouping window (not persisted: a restart asks again)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("queued")
        data["pending"] = {str(k): v for k, v in self.pending.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "queued"}
        known["pending"] = {int(k): v for k, v in (known.get("pending") or {}).items()}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class Notice:
    """Something people should hear about one endpoint."""

    event: Event
    endpoint: str
    at: float
    """Wall clock of the result that caused it."""
    result: ProbeResult | None
    opened_at: float | None
    reason: str | None
    detail: str


class AlertMachine:
    """Applies one endpoint's `AlertConfig` to its `AlertState`."""

    def __init__(self, cfg: AlertConfig) -> None:
        self.cfg = cfg

    def observe(self, state: AlertState, result: ProbeResult, now: float) -> Notice | None:
        """Feed one result; return what to announce, if anything."""
        state.last_latency_ms = result.latency_ms
        state.last_status = result.status
        if result.success:
            return self._success(state, result, now)
        state.failures += 1
        state.successes = 0
        state.reason = str(result.reason) if result.reason else "error"
        state.detail = result.detail
        if not state.open and state.failures >= self.cfg.failure_threshold:
            state.open, state.opened_at, state.announced = True, now, False
        if not state.open or state.queued:
            return None
        if not state.announced:
            return self._notice(Event.OPEN, state, result, now)
        due = self.cfg.reminder_interval
        if due is not None and now - (state.last_notified_at or now) >= due:
            return self._notice(Event.REMINDER, state, result, now)
        return None

    def _success(self, state: AlertState, result: ProbeResult, now: float) -> Notice | None:
        state.successes += 1
        state.failures = 0
        if not state.open or state.successes < self.cfg.success_threshold:
            return None
        was_announced = state.announced
        state.open, state.announced, state.resolved_at = False, False, now
        if was_announced and self.cfg.send_on_resolved:
            return self._notice(Event.RESOLVED, state, result, now)
        return None

    @staticmethod
    def _notice(event: Event, state: AlertState, result: ProbeResult, now: float) -> Notice:
        state.queued = True
        return Notice(
            event=event,
            endpoint=state.endpoint,
            at=now,
            result=result,
            opened_at=state.opened_at,
            reason=state.reason,
            detail=state.detail,
        )

    @staticmethod
    def announced(state: AlertState, notice: Notice, ids: list[int], now: float) -> None:
        """The outbox accepted the notice's messages: it will not be asked for again."""
        state.queued = False
        AlertMachine.accepted(state, notice.event, ids, now)

    @staticmethod
    def accepted(state: AlertState, event: Event, ids: list[int], now: float) -> None:
        """The outbox holds messages `ids` announcing `event` (also: found after a restart)."""
        if event is Event.OPEN:
            if not state.open:  # resolved while the notice waited: it was still sent
                return
            state.announced = True
        if event in (Event.OPEN, Event.REMINDER):
            state.last_notified_at = now
        for item_id in ids:
            state.pending[item_id] = str(event)
        state.last_notification = {"event": str(event), "status": "pending", "at": now}

    @staticmethod
    def not_sent(state: AlertState) -> None:
        """The notice was held or refused: the next result asks again."""
        state.queued = False

    @staticmethod
    def settled(state: AlertState, item_id: int, status: str, at: float) -> bool:
        """An outbox message of this endpoint was delivered or rejected; True if it was ours."""
        event = state.pending.pop(item_id, None)
        if event is None:
            return False
        if state.last_notification.get("event") == event:
            previous = state.last_notification.get("status")
            # One notice is several messages (topic, phone numbers): delivered once any got
            # through, dead only if none did.
            if previous != "delivered":
                state.last_notification = {"event": event, "status": status, "at": at}
        nothing_got_through = state.last_notification.get("status") in ("dead", "dropped")
        if event == Event.OPEN and nothing_got_through and event not in state.pending.values():
            # Counted as sent only once AWS accepted it: an open alert whose every message was
            # rejected is announced again by the next failure (say, once the topic exists).
            state.announced = False
        return True
