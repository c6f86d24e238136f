"""The probe worker: one worker checks every endpoint and turns results into alerts.

Per result: history and metrics always; then, unless the endpoint is in a maintenance window or
the probe host is offline, the endpoint's alert state machine. Notices wait in the grouping
window, pass the connectivity guard, and leave through the durable outbox (an SNS topic and/or
SMS numbers). The outbox ids are kept in the alert state, and the state's notification becomes
`delivered` only when the outbox reports that AWS accepted it (`OutboxDelivered`), also for
messages accepted before a restart.

A reload that changes `[probes]` restarts this worker; nothing is lost by it: alert states are
saved at stop and loaded at start, the history book lives as long as the process, and each
endpoint's schedule phase comes from its name, so unchanged endpoints keep their cadence.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.config.checks import alert_topics
from daemon.config.models import Config
from daemon.config.probes import EndpointConfig
from daemon.core.aws import describe_error
from daemon.core.iam import CONTRIBUTORS, Grant, Scope
from daemon.core.logs import get_logger
from daemon.outbox import InvalidMessage, Message, OutboxDelivered, OutboxFull, OutboxRejected
from daemon.outbox.senders import destination_grants
from daemon.probes.alerts import AlertMachine, AlertState, Event, Notice
from daemon.probes.history import HOUR, KEEP_HOURS, book_for
from daemon.probes.maintenance import in_maintenance
from daemon.probes.metrics import ProbeMetrics
from daemon.probes.notify import ORIGIN, Targets, messages, ours
from daemon.probes.prober import Prober
from daemon.probes.result import ProbeResult
from daemon.probes.scheduler import Job, Scheduler
from daemon.probes.state import StateStore
from daemon.probes.storm import ConnectivityGuard, Grouper, host_notice
from daemon.services import Services
from daemon.worker import Worker, WorkerContext, WorkerSpec, fingerprint
from daemon.workers.outbox import OUTBOX_USERS

SAVE_EVERY = 30.0
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
        self._wake = asyncio.Event()
        self._pending: dict[int, set[str]] = {}
        self._log: Any = get_logger()

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
        self._log = ctx.log
        store = self.store = StateStore(self.path)
        sub = self.services.events.subscribe(
            OutboxDelivered, OutboxRejected, maxsize=10_000, name="probes"
        )
        helpers: list[asyncio.Task[None]] = []
        try:
            await store.open()
            await self._load(store)
            await self._reconcile_pending()
            self.scheduler = Scheduler(
                [Job(n, ep.interval, ep.timeout) for n, ep in self.endpoints.items()],
                self._check,
                concurrency=self.cfg.concurrency,
                on_start=lambda _, late: self.metrics.lateness.observe(max(0.0, late)),
                on_skip=self._skipped,
            )
            helpers = [
                asyncio.create_task(self._deliveries(sub), name="probes:deliveries"),
                asyncio.create_task(self._notifier(ctx), name="probes:notifier"),
                asyncio.create_task(self._saver(ctx), name="probes:saver"),
            ]
            if self.guard is not None:
                helpers.append(asyncio.create_task(self._guard_loop(ctx), name="probes:guard"))
            ctx.log.info("probing", endpoints=len(self.endpoints), open_alerts=self._open_count())
            await self.scheduler.run(ctx.stop, tick=ctx.beat)
            await self._flush_notices(everything=True)
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
                for item_id in state.pending:
                    self._pending.setdefault(item_id, set()).add(name)
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

    async def _reconcile_pending(self) -> None:
        """Messages accepted before a restart: ask the outbox what became of them."""
        await self._recover_sending()
        for item_id in list(self._pending):
            status = await self.services.outbox.status(item_id)
            if status != "pending":
                self._settle(item_id, status)

    async def _recover_sending(self) -> None:
        """Notifications the last run was handing to the outbox when it died (the intent is
        saved before the put, the ids after it). The outbox, asked by the intent's origin,
        says whether the put was committed: then the alert counts as announced, as if the run
        had lived to save it, and a restart does not send it again. Found nothing: the put
        never committed (or, in the rare case that AWS accepted it within the few milliseconds
        before the state would have been saved, it was delivered and is gone); the alert is
        then not announced and the next failure sends it: a possible duplicate rather than an
        alert lost."""
        recovered = False
        for state in self.states.values():
            intent, state.sending = state.sending, {}
            if not intent:
                continue
            recovered = True
            ids = await self.services.outbox.with_origin(str(intent.get("origin")))
            event = Event(intent.get("event", Event.OPEN))
            if ids:
                AlertMachine.accepted(state, event, ids, float(intent.get("at") or self.clock()))
                for item_id in ids:
                    self._pending.setdefault(item_id, set()).add(state.endpoint)
            self._log.warning(
                "alert notice found in the outbox after a stop while sending it"
                if ids
                else "alert notice not found in the outbox after a stop while sending it: "
                "an open alert is sent again by its next failure",
                endpoint=state.endpoint,
                alert_event=str(event),
                items=ids,
            )
        if recovered:
            await self._save()

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
            self._wake.set()

    def _skipped(self, name: str, why: str) -> None:
        self.metrics.skipped.labels().inc()
        self._log.warning("check skipped", endpoint=name, why=why)

    # --- notifications ---------------------------------------------------------------------------

    async def _notifier(self, ctx: WorkerContext) -> None:
        loop = asyncio.get_running_loop()
        while not ctx.stopping:
            due = self.grouper.next_due()
            wait = SAVE_EVERY if due is None else max(0.0, due - loop.time())
            self._wake.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass
            await self._flush_notices()

    async def _flush_notices(self, *, everything: bool = False) -> None:
        loop = asyncio.get_running_loop()
        for group in self.grouper.due(loop.time(), everything=everything):
            await self._send_group(group)

    async def _send_group(self, notices: list[Notice]) -> None:
        if self.guard is not None and notices[0].event in (Event.OPEN, Event.REMINDER):
            online, change = await self.guard.confirm_online(loop_time())
            if change is not None:
                await self._host_event(change)
            if not online:
                for n in notices:
                    AlertMachine.not_sent(self.states[n.endpoint])
                self.metrics.notifications.labels(status="held").inc(len(notices))
                self._log.warning(
                    "alerts held: the probe host is offline",
                    endpoints=[n.endpoint for n in notices],
                )
                return
        by_targets: dict[Targets, list[Notice]] = {}
        for n in notices:
            alert = self.endpoints[n.endpoint].alert
            by_targets.setdefault(Targets(alert.topic, tuple(alert.sms)), []).append(n)
        announced: list[str] = []
        for targets, group in by_targets.items():
            if await self._put(group, targets):
                announced += [n.endpoint for n in group]
        await self._save()
        if announced:
            # Logged after the state is saved: from here on a restart will not repeat it.
            self._log.info("alert notice sent", alert_event=str(notices[0].event),
                           endpoints=announced)  # fmt: skip

    async def _put(self, notices: list[Notice], targets: Targets) -> bool:
        # The intent is saved first, under an origin unique to this put: a crash between the
        # outbox's commit and the next save would otherwise reload `announced = False` and
        # send the alert again (`_recover_sending`).
        origin = f"{ORIGIN}:{secrets.token_hex(8)}"
        now = self.clock()
        for n in notices:
            self.states[n.endpoint].sending = {"origin": origin, "event": str(n.event), "at": now}
        await self._save()
        try:
            ids = await self._notify(notices, targets, [n.endpoint for n in notices], origin)
        finally:
            for n in notices:
                self.states[n.endpoint].sending = {}
        for n in notices:
            state = self.states[n.endpoint]
            if ids is None:
                AlertMachine.not_sent(state)
                continue
            AlertMachine.announced(state, n, ids, now)
            for item_id in ids:
                self._pending.setdefault(item_id, set()).add(n.endpoint)
        return ids is not None

    async def _notify(
        self, notices: list[Notice], targets: Targets, about: list[str], origin: str = ORIGIN
    ) -> list[int] | None:
        """Put the messages for `notices` into the outbox: their ids, or None when it (or the
        topic's name) could not be had, so the next failure asks again."""
        if targets.topic:
            try:
                topic = await self.services.targets.aws_name("topics", targets.topic)
            except Exception as exc:  # noqa: BLE001 - AWS or config: retried by the next failure
                self.metrics.notifications.labels(status="refused").inc()
                self._log.error(
                    "alert notification not accepted: cannot resolve its topic",
                    endpoints=about,
                    topic=targets.topic,
                    error=describe_error(exc),
                )
                return None
            targets = Targets(topic, targets.sms)
        msgs = messages(
            notices,
            targets,
            env=self.env,
            urls={n: ep.url for n, ep in self.endpoints.items()},
            tags={n: ep.tags for n, ep in self.endpoints.items() if ep.tags},
            origin=origin,
        )
        return await self._put_messages(msgs, about)

    async def _put_messages(self, msgs: list[Message], about: list[str]) -> list[int] | None:
        if not msgs:  # no targets: the alert is tracked (status, metrics) but goes nowhere
            return []
        try:
            ids = await self.services.outbox.put_many(msgs)
        except (InvalidMessage, OutboxFull) as exc:
            self.metrics.notifications.labels(status="refused").inc(len(msgs))
            self._log.error("alert notification not accepted", endpoints=about, error=str(exc))
            return None
        self.metrics.notifications.labels(status="accepted").inc(len(msgs))
        return ids

    async def _host_event(self, event: Event) -> None:
        detail = "; ".join(
            f"{r.target}: {r.detail}" for r in (self.guard.last_round if self.guard else [])
        )
        offline = event is Event.HOST_OFFLINE
        what = "probe host offline: alerts held" if offline else "probe host online"
        self._log.warning(what, detail=detail)
        notice = host_notice(event, self.clock(), detail)
        topics = {ep.alert.topic for ep in self.endpoints.values() if ep.alert.topic}
        numbers = {n for ep in self.endpoints.values() for n in ep.alert.sms}
        for topic in sorted(topics):
            await self._notify([notice], Targets(topic, ()), ["*"])
        if numbers:
            await self._notify([notice], Targets(None, tuple(sorted(numbers))), ["*"])

    async def _guard_loop(self, ctx: WorkerContext) -> None:
        assert self.guard is not None
        while await ctx.sleep(self.cfg.storm.connectivity_interval):
            change = await self.guard.round(loop_time())
            if change is not None:
                await self._host_event(change)

    # --- delivery confirmations ------------------------------------------------------------------

    async def _deliveries(self, sub: Any) -> None:
        while True:
            event = await sub.get()
            if not ours(event.origin):
                continue
            status = "delivered" if isinstance(event, OutboxDelivered) else "dead"
            if self._settle(event.item_id, status):
                await self._save()

    def _settle(self, item_id: int, status: str) -> bool:
        names = self._pending.pop(item_id, set())
        now = self.clock()
        for name in names:
            state = self.states.get(name)
            ours = state is not None and AlertMachine.settled(state, item_id, status, now)
            if ours and status == "dead":
                self._log.error(
                    "alert notification rejected by AWS", endpoint=name, item_id=item_id
                )
        if names:
            label = "delivered" if status == "delivered" else "rejected"
            self.metrics.notifications.labels(status=label).inc()
        return bool(names)

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
            await self.store.save_uptime(self.book.take_dirty())

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
            "url": self.endpoints[name].url,
            "state": "unknown" if last is None else "up" if last.success else "down",
            "silenced": self.silenced.get(name),
            "alert": {
                "open": state.open,
                "announced": state.announced,
                "opened_at": _iso(state.opened_at),
                "failures": state.failures,
                "successes": state.successes,
                "reason": state.reason if state.open else None,
                "notification": state.last_notification or None,
            },
            "last": None
            if last is None
            else {
                "at": _iso(last.started_at),
                "success": last.success,
                "reason": str(last.reason) if last.reason else None,
                "detail": last.detail,
                "status": last.status,
                "latency_ms": last.latency_ms,
                "cert_expires_at": _iso(last.cert_expires_at),
            },
            "uptime_24h": history.uptime(DAY, now),
            "uptime_7d": history.uptime(7 * DAY, now),
            "recent": [s.to_json() for s in list(history.recent)[-10:]],
        }


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _build(config: Config, services: Services) -> Worker:
    return ProbesWorker(config, services)


def _alerts_anywhere(config: Config) -> bool:
    return any(
        ep.alert.enabled and (ep.alert.topic or ep.alert.sms)
        for ep in config.probes.endpoints.values()
    )


OUTBOX_USERS.append(_alerts_anywhere)


def _iam(config: Config, scope: Scope) -> list[Grant]:
    """sns:Publish on the alert topics, and for SMS on `*`: AWS has no resource (and no condition
    key) for a phone number, so publishing SMS needs sns:Publish on any resource, which also
    allows publishing to any topic of the account."""
    probes = config.probes
    if not probes.endpoints:
        return []
    topics = [topic for _, topic in alert_topics(config)]
    numbers = sorted({n for ep in probes.endpoints.values() for n in ep.alert.sms})
    return destination_grants("sns", "probes", topics, scope) + destination_grants(
        "sms", "probes", numbers, scope
    )


CONTRIBUTORS.append(_iam)


def specs(config: Config) -> list[WorkerSpec]:
    if not config.probes.endpoints:
        return []
    return [
        WorkerSpec(
            name="probes",
            kind="probes",
            fingerprint=fingerprint(config.probes, config.env, config.runtime.state_dir),
            build=lambda services: _build(config, services),
        )
    ]
