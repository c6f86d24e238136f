"""The in-process event bus: how workers tell each other things without importing each other.

Publishing never blocks and never raises. Each subscription has a bounded queue; when it is full
the newest event is refused, counted and logged (the subscriber is too slow, and blocking the
publisher would stall, say, the probe engine). Anything that must not be lost goes through the
durable outbox instead; the bus carries notifications.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from daemon.core.logs import get_logger
from daemon.core.metrics import Registry

log = get_logger()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event; subclasses add typed fields."""

    source: str = ""
    """The worker that published it."""
    at: float = field(default_factory=time.time)
    """Wall-clock time of the event (for people and for messages leaving the process)."""


class Subscription:
    """A bounded stream of the events of the types asked for."""

    def __init__(
        self, bus: EventBus, types: tuple[type[Event], ...], maxsize: int, name: str
    ) -> None:
        self.types = types
        self.name = name
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0
        self._bus = bus

    async def get(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        self._bus._unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self.queue.get()


class EventBus:
    """Fan-out of events to subscriptions by type."""

    def __init__(self, metrics: Registry) -> None:
        self._subs: list[Subscription] = []
        self._dropped = metrics.counter(
            "awsd_events_dropped_total",
            "Events refused because a subscriber queue was full",
            ("subscriber",),
        )
        self._published = metrics.counter(
            "awsd_events_published_total", "Events published", ("type",)
        )
        queued = metrics.gauge(
            "awsd_events_queued", "Events waiting in a subscriber queue", ("subscriber",)
        )

        def collect() -> None:
            for sub in self._subs:
                queued.labels(subscriber=sub.name).set(sub.queue.qsize())

        metrics.add_collector(collect)

    def subscribe(self, *types: type[Event], maxsize: int = 1000, name: str = "") -> Subscription:
        sub = Subscription(self, types or (Event,), maxsize, name or "anonymous")
        self._subs.append(sub)
        return sub

    def publish(self, event: Event) -> int:
        """Deliver to every matching subscription; return how many took it."""
        self._published.labels(type=type(event).__name__).inc()
        taken = 0
        for sub in self._subs:
            if not isinstance(event, sub.types):
                continue
            try:
                sub.queue.put_nowait(event)
                taken += 1
            except asyncio.QueueFull:
                sub.dropped += 1
                self._dropped.labels(subscriber=sub.name).inc()
                log.warning(
                    "event dropped: subscriber queue full",
                    subscriber=sub.name,
                    event_type=type(event).__name__,
                    dropped_total=sub.dropped,
                )
        return taken

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"name": s.name, "queued": s.queue.qsize(), "dropped": s.dropped} for s in self._subs
        ]


# --- events shared between workers --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigReloaded(Event):
    """The daemon applied a new config (published once the workers were updated)."""

    version: str
    """The new config version."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceDrifted(Event):
    """A declared AWS resource no longer matches the config (published by the reconciler once
    per distinct drift, in `detect` and in `enforce` mode). The SNS publisher forwards it."""

    env: str
    resource: str
    """Address: `queue.readings`."""
    physical: str
    """Its AWS name."""
    arn: str
    action: str
    """What it takes to fix: `create` (it is missing), `update`, `replace`, `delete`."""
    changes: tuple[tuple[str, str, str], ...]
    """(attribute path, expected, actual) with values as JSON text."""
    fixed: bool
    """True when the reconciler (enforce mode) has already put it back."""

    def text(self) -> str:
        """A one-line summary for an alert (SNS, SMS)."""
        shown = "; ".join(f"{path or 'resource'}: {actual} -> {expected}"
                          for path, expected, actual in self.changes[:3])  # fmt: skip
        more = f" (+{len(self.changes) - 3} more)" if len(self.changes) > 3 else ""
        state = "fixed" if self.fixed else "not fixed"
        return f"awsd[{self.env}] drift on {self.resource} ({self.action}, {state}): {shown}{more}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceContested(Event):
    """The reconciler fixed the same drift on a resource `fixes` times within `window_s`:
    another tool keeps changing it back, so the reconciler stopped fixing it."""

    env: str
    resource: str
    physical: str
    arn: str
    fixes: int
    window_s: float
    paths: tuple[str, ...]
    """The attributes being fought over."""

    def text(self) -> str:
        return (
            f"awsd[{self.env}] {self.resource} is contested: the same fix was applied "
            f"{self.fixes} times in {self.window_s:g} s ({', '.join(self.paths)}); awsd stopped "
            "fixing it until someone decides which side is right"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StateStoreFailing(Event):
    """A state store (outbox, checkpoints, probe state) could not write to disk: the state
    directory is full (`full`) or the write failed otherwise. Published once per episode."""

    store: str
    """`outbox`, `kinesis-checkpoints:<reader>`, `probes`, ..."""
    path: str
    full: bool
    free_bytes: int | None
    error: str

    def text(self) -> str:
        if self.full:
            free = "unknown" if self.free_bytes is None else f"{self.free_bytes} bytes"
            return (
                f"awsd: state directory full ({free} free): {self.store} cannot write {self.path}"
            )
        return f"awsd: {self.store} cannot write {self.path}: {self.error}"


@dataclass(frozen=True, slots=True, kw_only=True)
class StateStoreRecovered(Event):
    """A state store that was failing wrote successfully again."""

    store: str
    path: str
    failing_s: float
    """How long it was failing."""

    def text(self) -> str:
        return f"awsd: {self.store} writes to {self.path} again (after {self.failing_s:.0f} s)"
