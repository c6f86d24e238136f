"""Alert notices on their way out, and the news of their delivery coming back.

Notices wait in the grouping window (`storm.Grouper`), pass the connectivity guard, and leave
through the durable outbox (an SNS topic and/or SMS numbers). The outbox ids are kept in the alert
state, and the state's notification becomes `delivered` only when the outbox reports that AWS
accepted it (`OutboxDelivered`), also for messages accepted before a restart.

A notice is never lost between the alert state and the outbox: the intent to send is saved under
an origin unique to the put before the put, and the ids after it; a crash in between is settled
at the next start by asking the outbox for that origin (`recover`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.base.awserrors import describe_error
from daemon.config.probes import EndpointConfig
from daemon.core.targets import Targets as Resolver
from daemon.outbox import (
    Fate,
    InvalidMessage,
    Message,
    Outbox,
    OutboxDelivered,
    OutboxDropped,
    OutboxFull,
)
from daemon.probes.alerts import AlertMachine, AlertState, Event, Notice
from daemon.probes.metrics import ProbeMetrics
from daemon.probes.notify import ORIGIN, Targets, messages, ours
from daemon.probes.storm import ConnectivityGuard, Grouper, host_notice
from daemon.worker import WorkerContext

SAVE_EVERY = 30.0


def loop_time() -> float:
    return asyncio.get_running_loop().time()


class AlertDelivery:
    """The notices of one probe worker (see the module docstring)."""

    def __init__(
        self,
        *,
        env: str,
        endpoints: dict[str, EndpointConfig],
        states: dict[str, AlertState],
        grouper: Grouper,
        guard: ConnectivityGuard | None,
        outbox: Outbox,
        resolver: Resolver,
        metrics: ProbeMetrics,
        clock: Callable[[], float],
        save: Callable[[], Awaitable[None]],
        log: Any,
    ) -> None:
        self.env = env
        self.endpoints = endpoints
        self.states = states
        self.grouper = grouper
        self.guard = guard
        self.outbox = outbox
        self.resolver = resolver
        self.metrics = metrics
        self.clock = clock
        self._save = save
        self.log = log
        self.connectivity_interval = 60.0
        """Seconds between rounds of the connectivity guard (`probes.storm`)."""
        self.wake = asyncio.Event()
        """Set when a notice joins the grouping window."""
        self.pending: dict[int, set[str]] = {}
        """Outbox ids not yet delivered -> the endpoints whose notification they carry."""

    def track(self, state: AlertState) -> None:
        """Follow the outbox ids a loaded state is still waiting for."""
        for item_id in state.pending:
            self.pending.setdefault(item_id, set()).add(state.endpoint)

    async def recover(self) -> None:
        """Messages accepted before a restart: ask the outbox what became of them."""
        await self._recover_sending()
        for item_id in list(self.pending):
            status = await self.outbox.status(item_id)
            if status.fate is not Fate.ACCEPTED:
                self._settle(item_id, str(status.fate))

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
            ids = await self.outbox.with_origin(str(intent.get("origin")))
            event = Event(intent.get("event", Event.OPEN))
            if ids:
                AlertMachine.accepted(state, event, ids, float(intent.get("at") or self.clock()))
                for item_id in ids:
                    self.pending.setdefault(item_id, set()).add(state.endpoint)
            self.log.warning(
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

    async def notifier(self, ctx: WorkerContext) -> None:
        loop = asyncio.get_running_loop()
        while not ctx.stopping:
            due = self.grouper.next_due()
            wait = SAVE_EVERY if due is None else max(0.0, due - loop.time())
            self.wake.clear()
            try:
                async with asyncio.timeout(wait):
                    await self.wake.wait()
            except TimeoutError:
                pass
            await self.flush()

    async def flush(self, *, everything: bool = False) -> None:
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
                self.log.warning(
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
            self.log.info("alert notice sent", alert_event=str(notices[0].event),
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
                self.pending.setdefault(item_id, set()).add(n.endpoint)
        return ids is not None

    async def _notify(
        self, notices: list[Notice], targets: Targets, about: list[str], origin: str = ORIGIN
    ) -> list[int] | None:
        """Put the messages for `notices` into the outbox: their ids, or None when it (or the
        topic's name) could not be had, so the next failure asks again."""
        if targets.topic:
            try:
                topic = await self.resolver.aws_name("topics", targets.topic)
            except Exception as exc:  # noqa: BLE001 - AWS or config: retried by the next failure
                self.metrics.notifications.labels(status="refused").inc()
                self.log.error(
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
            urls={n: ep.target for n, ep in self.endpoints.items()},
            tags={n: ep.tags for n, ep in self.endpoints.items() if ep.tags},
            origin=origin,
        )
        return await self._put_messages(msgs, about)

    async def _put_messages(self, msgs: list[Message], about: list[str]) -> list[int] | None:
        if not msgs:  # no targets: the alert is tracked (status, metrics) but goes nowhere
            return []
        try:
            ids = await self.outbox.put_many(msgs)
        except (InvalidMessage, OutboxFull) as exc:
            self.metrics.notifications.labels(status="refused").inc(len(msgs))
            self.log.error("alert notification not accepted", endpoints=about, error=str(exc))
            return None
        self.metrics.notifications.labels(status="accepted").inc(len(msgs))
        return ids

    async def _host_event(self, event: Event) -> None:
        detail = "; ".join(
            f"{r.target}: {r.detail}" for r in (self.guard.last_round if self.guard else [])
        )
        offline = event is Event.HOST_OFFLINE
        what = "probe host offline: alerts held" if offline else "probe host online"
        self.log.warning(what, detail=detail)
        notice = host_notice(event, self.clock(), detail)
        topics = {ep.alert.topic for ep in self.endpoints.values() if ep.alert.topic}
        numbers = {n for ep in self.endpoints.values() for n in ep.alert.sms}
        for topic in sorted(topics):
            await self._notify([notice], Targets(topic, ()), ["*"])
        if numbers:
            await self._notify([notice], Targets(None, tuple(sorted(numbers))), ["*"])

    async def guard_loop(self, ctx: WorkerContext) -> None:
        assert self.guard is not None
        while await ctx.sleep(self.connectivity_interval):
            change = await self.guard.round(loop_time())
            if change is not None:
                await self._host_event(change)

    # --- delivery confirmations ------------------------------------------------------------------

    async def deliveries(self, sub: Any) -> None:
        while True:
            event = await sub.get()
            if not ours(event.origin):
                continue
            status = (
                "delivered"
                if isinstance(event, OutboxDelivered)
                else "dropped"
                if isinstance(event, OutboxDropped)
                else "dead"
            )
            if self._settle(event.item_id, status):
                await self._save()

    def _settle(self, item_id: int, status: str) -> bool:
        names = self.pending.pop(item_id, set())
        now = self.clock()
        for name in names:
            state = self.states.get(name)
            ours = state is not None and AlertMachine.settled(state, item_id, status, now)
            if ours and status in ("dead", "dropped"):
                self.log.error(
                    "alert notification rejected by AWS"
                    if status == "dead"
                    else "alert notification dropped from the full outbox",
                    endpoint=name,
                    item_id=item_id,
                )
        if names:
            label = {"delivered": "delivered", "dropped": "dropped"}.get(status, "rejected")
            self.metrics.notifications.labels(status=label).inc()
        return bool(names)
