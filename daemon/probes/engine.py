"""The probe engine: one worker checks every endpoint and turns results into alerts.

Per result: history and metrics always; then, unless the endpoint is in a maintenance window or
the probe host is offline, the endpoint's alert state machine, whose notices go out through
`delivery.AlertDelivery` (grouping window, connectivity guard, the durable outbox).

A reload that changes `[probes]` restarts this worker; nothing is lost by it: alert states are
saved at stop and loaded at start, the history book lives as long as the process, and each
endpoint's schedule phase comes from its name, so unchanged endpoints keep their cadence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.base.clock import iso_utc
from daemon.config.models import Config
from daemon.config.probes import EndpointConfig
from daemon.core.logs import get_logger
from daemon.outbox import OutboxDelivered, OutboxDropped, OutboxRejected
from daemon.probes.alerts import AlertMachine, AlertState
from daemon.probes.delivery import SAVE_EVERY, AlertDelivery
from daemon.probes.history import HOUR, KEEP_HOURS, book_for
from daemon.probes.maintenance import in_maintenance
from daemon.probes.metrics import ProbeMetrics
from daemon.probes.prober import Prober
from daemon.probes.result import ProbeResult
from daemon.probes.scheduler import Job, Scheduler
from daemon.probes.state import StateStore
from daemon.probes.storm import ConnectivityGuard, Grouper
from daemon.services import Services
from daemon.worker import Worker, WorkerContext

DAY = 86400.0


def state_path(config: Config) -> str:
    return str(Path(config.runtime.state_dir) / "probes.sqlite3")


class ProbesWorker(Worker):
    def __init__(
        self, config: Config, services: Services, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.cfg = config.probes
        self.env = config.env
        self.services = services
        self.clock = clock
        """Wall clock (epoch seconds) for maintenance windows and alert times; tests inject one."""
        self.endpoints: dict[str, EndpointConfig] = dict(self.cfg.endpoints)
        self.path = state_path(config)
        self.book = book_for(self.path, self.cfg.history)
        self.metrics = ProbeMetrics(services.metrics)
        self.machines = {name: AlertMachine(ep.alert) for name, ep in self.endpoints.items()}
        self.states: dict[str, AlertState] = {name: AlertState(name) for name in self.endpoints}
        self.last: dict[str, ProbeResult] = {}
        self.silenced: dict[str, str] = {}
        self.grouper = Grouper(self.cfg.storm.group_window)
        self.prober = Prober()
        self.guard = self._guard()
        self.scheduler: Scheduler | None = None
        self.store: StateStore | None = None
        self._log: Any = get_logger()
        self.delivery = AlertDelivery(
            env=self.env,
            endpoints=self.endpoints,
            states=self.states,
            grouper=self.grouper,
            guard=self.guard,
            outbox=services.outbox,
            resolver=services.targets,
            metrics=self.metrics,
            clock=clock,
            save=self._save,
            log=self._log,
        )
        self.delivery.connectivity_interval = self.cfg.storm.connectivity_interval

    def _guard(self) -> ConnectivityGuard | None:
        storm = self.cfg.storm
        if not storm.connectivity:
            return None
        checks = {
            f"connectivity:{i}": EndpointConfig(
                url=url, timeout=storm.connectivity_timeout, interval=3600
            )
            for i, url in enumerate(storm.connectivity)
        }

        async def check() -> list[ProbeResult]:
            return list(await asyncio.gather(*(self.prober.check(n, c) for n, c in checks.items())))

        return ConnectivityGuard(check)

    # --- lifecycle -------------------------------------------------------------------------------

    async def run(self, ctx: WorkerContext) -> None:
        self._log = self.delivery.log = ctx.log
        store = self.store = StateStore(self.path, health=self.services.storage)
        sub = self.services.events.subscribe(
            OutboxDelivered, OutboxRejected, OutboxDropped, maxsize=10_000, name="probes"
        )
        helpers: list[asyncio.Task[None]] = []
        try:
            await store.open()
            await self._load(store)
            await self.delivery.recover()
            self.scheduler = Scheduler(
                [Job(n, ep.interval, ep.timeout) for n, ep in self.endpoints.items()],
                self._check,
                concurrency=self.cfg.concurrency,
                on_start=lambda _, late: self.metrics.lateness.observe(max(0.0, late)),
                on_skip=self._skipped,
            )
            helpers = [
                asyncio.create_task(self.delivery.deliveries(sub), name="probes:deliveries"),
                asyncio.create_task(self.delivery.notifier(ctx), name="probes:notifier"),
                asyncio.create_task(self._saver(ctx), name="probes:saver"),
            ]
            if self.guard is not None:
                helpers.append(
                    asyncio.create_task(self.delivery.guard_loop(ctx), name="probes:guard")
                )
            ctx.log.info("probing", endpoints=len(self.endpoints), open_alerts=self._open_count())
            await self.scheduler.run(ctx.stop, tick=ctx.beat)
            await self.delivery.flush(everything=True)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            sub.close()
            try:
                await self._save(final=True)
            finally:
                await store.close()
                await self.prober.close()

    async def _load(self, store: StateStore) -> None:
        saved = await store.load_alerts()
        gone = [name for name in saved if name not in self.endpoints]
        for name in gone:
            if saved[name].open:
                self._log.warning("open alert dropped with its endpoint", endpoint=name)
        await store.delete_alerts(gone)
        for name, state in saved.items():
            if name in self.states:
                self.states[name] = state
                self.delivery.track(state)
        for name in self.book.forget(set(self.endpoints)):
            self.metrics.forget(name)
        if not self.book.loaded:
            now_hour = int(self.clock() // HOUR)
            for name, hour, ok, total in await store.load_uptime(now_hour - KEEP_HOURS):
                if name in self.endpoints:
                    counts = self.book.get(name).hours.setdefault(hour, [0, 0])
                    counts[0], counts[1] = max(counts[0], ok), max(counts[1], total)
            self.book.loaded = True
        self.metrics.open.set(self._open_count())

    # --- results ---------------------------------------------------------------------------------

    async def _check(self, name: str) -> None:
        result = await self.prober.check(name, self.endpoints[name])
        self.record(result)

    def record(self, result: ProbeResult) -> None:
        """Everything one result changes (public so tests can feed results directly)."""
        name = result.endpoint
        self.last[name] = result
        self.book.add(result)
        self.metrics.observe(result)
        cfg = self.endpoints[name]
        if not cfg.alert.enabled:
            return
        now = self.clock()
        if cfg.maintenance and in_maintenance(cfg.maintenance, now):
            self.silenced[name] = "maintenance"
            return
        if self.guard is not None and not self.guard.online:
            self.silenced[name] = "probe host offline"
            return
        self.silenced.pop(name, None)
        state = self.states[name]
        was_open = state.open
        notice = self.machines[name].observe(state, result, now)
        if state.open != was_open:
            self.metrics.open.set(self._open_count())
            self._log.warning(
                "alert opened" if state.open else "alert resolved",
                endpoint=name,
                reason=state.reason if state.open else None,
                detail=result.detail,
            )
        if notice is not None:
            self.metrics.alerts.labels(endpoint=name, event=str(notice.event)).inc()
            self.grouper.add(notice, asyncio.get_running_loop().time())
            self.delivery.wake.set()

    def _skipped(self, name: str, why: str) -> None:
        self.metrics.skipped.labels().inc()
        self._log.warning("check skipped", endpoint=name, why=why)

    async def _flush_notices(self, *, everything: bool = False) -> None:
        await self.delivery.flush(everything=everything)

    # --- persistence -----------------------------------------------------------------------------

    async def _saver(self, ctx: WorkerContext) -> None:
        while await ctx.sleep(SAVE_EVERY):
            await self._save(final=True)

    async def _save(self, *, final: bool = False) -> None:
        """Alert states (all of them periodically and at stop; they are small) and uptime."""
        if self.store is None:
            return
        await self.store.save_alerts(list(self.states.values()))
        if final:
            rows = self.book.take_dirty()
            if not await self.store.save_uptime(rows):
                self.book.dirty.update((name, hour) for name, hour, _, _ in rows)

    # --- status ----------------------------------------------------------------------------------

    def _open_count(self) -> int:
        return sum(1 for s in self.states.values() if s.open)

    def health(self) -> dict[str, Any]:
        now = self.clock()
        endpoints = {name: self._endpoint_health(name, now) for name in self.endpoints}
        out: dict[str, Any] = {
            "endpoints_total": len(self.endpoints),
            "endpoints_down": sum(1 for e in endpoints.values() if e["state"] == "down"),
            "alerts_open": self._open_count(),
            "notices_waiting": len(self.grouper),
            "checks_in_flight": self.scheduler.in_flight if self.scheduler else 0,
            "checks_started": self.scheduler.started if self.scheduler else 0,
            "checks_skipped": self.scheduler.skipped if self.scheduler else 0,
            "endpoints": endpoints,
        }
        if self.guard is not None:
            out["probe_host"] = self.guard.describe()
        return out

    def _endpoint_health(self, name: str, now: float) -> dict[str, Any]:
        state, last = self.states[name], self.last.get(name)
        history = self.book.get(name)
        return {
            "url": self.endpoints[name].target,
            "state": "unknown" if last is None else "up" if last.success else "down",
            "silenced": self.silenced.get(name),
            "alert": {
                "open": state.open,
                "announced": state.announced,
                "opened_at": iso_utc(state.opened_at),
                "failures": state.failures,
                "successes": state.successes,
                "reason": state.reason if state.open else None,
                "notification": state.last_notification or None,
            },
            "last": None
            if last is None
            else {
                "at": iso_utc(last.started_at),
                "success": last.success,
                "reason": str(last.reason) if last.reason else None,
                "detail": last.detail,
                "status": last.status,
                "latency_ms": last.latency_ms,
                "cert_expires_at": iso_utc(last.cert_expires_at),
            },
            "uptime_24h": history.uptime(DAY, now),
            "uptime_7d": history.uptime(7 * DAY, now),
            "recent": [s.to_json() for s in list(history.recent)[-10:]],
        }
