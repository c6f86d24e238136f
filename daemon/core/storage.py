"""The health of the daemon's state on disk: which store cannot write, and why.

Every store under the state directory (the outbox, the Kinesis checkpoints, the probe alert
state and uptime counts) reports each write to one `StateHealth`: a failure marks the store as
failing (a full file system is told apart from other errors, with the bytes still free), a later
success clears it. From that one record come:

- `/readyz`: degraded (503) while a store is failing, naming it;
- `/status`: `state_dir.failing` with the error, since when, and the free bytes;
- metrics: `awsd_state_store_failing{store}` (0 or 1), `awsd_state_write_failures_total{store,
  reason}` and `awsd_state_free_bytes` (the state directory's file system);
- events: `StateStoreFailing` once per episode and `StateStoreRecovered` at its end (the SNS
  publisher can forward both as text), each logged once, not per failed write.

Stores keep what they could not write in memory and retry it (see each store), so recovery
needs no operator: when space returns, the next write succeeds and the record clears.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from daemon.base.files import free_bytes, is_disk_full
from daemon.core.events import EventBus, StateStoreFailing, StateStoreRecovered
from daemon.core.logs import get_logger
from daemon.core.metrics import Registry

log = get_logger()


class StateDirFull(Exception):
    """A write was refused because the state directory's file system is (nearly) full."""

    def __init__(self, path: str, free: int | None, detail: str = "") -> None:
        self.path = path
        self.free = free
        shown = "unknown" if free is None else str(free)
        super().__init__(
            f"state directory full: {shown} bytes free in {path}"
            + (f" ({detail})" if detail else "")
        )


@dataclass
class _Failing:
    path: str
    full: bool
    error: str
    since: float
    """Wall-clock time (shown to people)."""
    since_mono: float
    free: int | None
    count: int = 1


class StateHealth:
    """One per process: the stores' last write outcomes (see the module docstring)."""

    def __init__(
        self, metrics: Registry, events: EventBus, *, state_dir: str | None = None
    ) -> None:
        self.events = events
        self.state_dir = state_dir
        self.failing: dict[str, _Failing] = {}
        self._m_failing = metrics.gauge(
            "awsd_state_store_failing",
            "1 while a state store cannot write to disk (full or failing), else 0",
            ("store",),
        )
        self._m_failures = metrics.counter(
            "awsd_state_write_failures_total",
            "State writes that failed, by store and reason (full, error)",
            ("store", "reason"),
        )
        free = metrics.gauge(
            "awsd_state_free_bytes", "Bytes free on the state directory's file system"
        ).labels()

        def collect() -> None:
            if self.state_dir is not None:
                value = free_bytes(self.state_dir)
                if value is not None:
                    free.set(value)

        metrics.add_collector(collect)

    def watch(self, store: str) -> None:
        """Export the store's gauge as 0 from the start (alarms see the series before trouble)."""
        self._m_failing.labels(store=store)

    def ok(self, store: str) -> None:
        """A write of `store` succeeded."""
        failing = self.failing.pop(store, None)
        if failing is None:
            return
        self._m_failing.labels(store=store).set(0)
        took = time.monotonic() - failing.since_mono
        log.info(
            "state store writes again",
            store=store,
            path=failing.path,
            failed_writes=failing.count,
            failing_s=round(took, 3),
        )
        self.events.publish(
            StateStoreRecovered(source="state", store=store, path=failing.path, failing_s=took)
        )

    def failed(self, store: str, path: str, exc: BaseException) -> bool:
        """A write of `store` failed with `exc`; True when the disk is full."""
        full = isinstance(exc, StateDirFull) or is_disk_full(exc)
        free = exc.free if isinstance(exc, StateDirFull) else free_bytes(path)
        error = str(exc) if isinstance(exc, StateDirFull) else f"{type(exc).__name__}: {exc}"
        self._m_failures.labels(store=store, reason="full" if full else "error").inc()
        current = self.failing.get(store)
        if current is not None:
            current.count += 1
            current.free, current.error, current.full = free, error, full
            return full
        self.failing[store] = _Failing(path, full, error, time.time(), time.monotonic(), free)
        self._m_failing.labels(store=store).set(1)
        log.error(
            "state directory full: store cannot write" if full else "state store cannot write",
            store=store,
            path=path,
            free_bytes=free,
            error=error,
        )
        self.events.publish(
            StateStoreFailing(
                source="state", store=store, path=path, full=full, free_bytes=free, error=error
            )
        )
        return full

    def degraded(self) -> dict[str, str]:
        """Failing stores and why (what /readyz names)."""
        return {
            name: ("state directory full: " if f.full else "")
            + (f"{f.free} bytes free" if f.full and f.free is not None else f.error)
            for name, f in self.failing.items()
        }

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.state_dir,
            "free_bytes": free_bytes(self.state_dir) if self.state_dir else None,
            "failing": {
                name: {
                    "path": f.path,
                    "full": f.full,
                    "free_bytes": f.free,
                    "error": f.error,
                    "since": round(f.since, 3),
                    "failed_writes": f.count,
                }
                for name, f in self.failing.items()
            },
        }
