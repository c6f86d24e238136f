"""The reconciler worker: keeps the AWS resources of `[resources]` as declared.

Every `resources.interval` seconds (jittered, so a fleet does not call AWS in step), after each
reload, and sooner after a pass that failed (backoff), it plans (`daemon.reconcile.plan`):

- `detect` mode: drift is logged (warning, with the attributes), counted
  (`awsd_reconciler_drift_total`), and published once per distinct drift as a `ResourceDrifted`
  event, which the SNS publisher forwards;
- `enforce` mode: drift is also fixed (`daemon.reconcile.apply`), except replacements unless
  `enforce_replace`, blocked changes (ownership, the prune cap) and contested resources: the same
  fix repeated `flap_threshold` times within `flap_window` means another tool fights it, and
  the reconciler stops and publishes `ResourceContested` (`daemon.reconcile.flapping`).

A resource that cannot be read or fixed (AccessDenied, AWS down) is logged with the reason and
retried on the next pass; the worker never crashes over one resource.

With `mode = "enforce"` and `reconcile_at_start`, one pass runs before the other workers start
(`prepare`), bounded by `startup_timeout`, so the queues and topics they use exist first.

Only one daemon of a fleet reconciles at a time: the worker asks its `Leadership` before each
pass. A daemon alone is always the leader (`SingleDaemon`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from daemon.base.retry import Attempts, Backoff
from daemon.base.stop import Stopped, StopToken
from daemon.config.models import Config
from daemon.core.events import ConfigReloaded, ResourceContested, ResourceDrifted
from daemon.core.iam import CONTRIBUTORS
from daemon.core.logs import get_logger
from daemon.reconcile.apply import Applier, ApplyReport, Outcome
from daemon.reconcile.flapping import Contest, FlapTracker
from daemon.reconcile.iam import reconciler_grants
from daemon.reconcile.plan import Plan, ResourcePlan, make_plan
from daemon.reconcile.render import value_text
from daemon.resources.base import Context, explain, ownership_tags
from daemon.resources.diff import canonical
from daemon.services import Services
from daemon.worker import Worker, WorkerContext, WorkerSpec, fingerprint

log = get_logger()

NAME = "reconciler"
STALL_TIMEOUT = 900.0  # a pass may wait minutes for a reshard or a recreated queue
BEAT_EVERY = 30.0
RETRY_BACKOFF_INITIAL = 5.0


class Leadership(Protocol):
    """Who may reconcile in a fleet: asked before every pass."""

    async def is_leader(self) -> bool: ...

    async def release(self) -> None: ...


class SingleDaemon:
    """A daemon alone is always the leader."""

    async def is_leader(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class LeaseLeadership:
    """One reconciler per environment across a fleet: the holder of the lease
    `reconciler:<env>` in `resources.lease_table` (`daemon.core.leases.LeaderLease`: conditional
    writes, expiry judged by counter changes seen locally). Once asked, it keeps stepping the
    lease in the background every third of `lease_failover`, so the holder renews and the
    others notice a dead holder; a lease it cannot reach counts as not held."""

    def __init__(
        self,
        config: Config,
        services: Services,
        context: Callable[[], Awaitable[Context]],
        *,
        log: Any = log,
    ) -> None:
        self.config = config
        self.services = services
        self.context = context
        self.log = log
        self.leading = False
        self._lease: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._announced: bool | None = None

    async def _lease_object(self) -> Any:
        if self._lease is None:
            from daemon.core.leases import LeaderLease, LeaseTable, default_owner  # noqa: PLC0415

            res = self.config.resources
            ctx = await self.context()
            assert res.lease_table is not None
            name = ctx.physical_of("tables", res.lease_table)
            declared = res.lease_table in res.tables
            table = LeaseTable(
                self.services.clients,
                name,
                default_owner(),
                tags=ownership_tags(self.config.env) if declared else None,
            )
            await table.ensure_table()
            self._lease = LeaderLease(table, f"{NAME}:{self.config.env}", res.lease_failover)
        return self._lease

    async def _step(self) -> bool:
        async with self._lock:  # the background renewal and a pass never step at once
            was = self.leading
            try:
                lease = await self._lease_object()
                self.leading = bool(await lease.step(asyncio.get_running_loop().time()))
            except Exception as exc:  # noqa: BLE001 - an unreachable lease is not held
                if was or self._announced is None:
                    self.log.warning("reconciler lease unavailable", error=explain(exc))
                self.leading = False
            if self.leading != self._announced:
                self._announced = self.leading
                self.log.info(
                    "reconciling: this daemon holds the lease"
                    if self.leading
                    else "standing by: another daemon holds the reconciler lease"
                )
            return self.leading

    async def _keep_stepping(self) -> None:
        while True:
            await asyncio.sleep(self.config.resources.lease_failover / 3)
            await self._step()

    async def is_leader(self) -> bool:
        """Step the lease now (a fresh answer for the pass about to run)."""
        leading = await self._step()
        if self._task is None:
            self._task = asyncio.create_task(self._keep_stepping(), name="reconciler-lease")
        return leading

    async def release(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._lease is not None and self.leading:
            async with self._lock:
                with contextlib.suppress(Exception):  # it expires by itself when unreachable
                    await self._lease.release()
        self.leading = False


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass found and did."""

    at: float
    """Wall-clock time it started (for people)."""
    seconds: float
    leader: bool = True
    checked: int = 0
    drifted: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    """Drifted resources put back (enforce mode)."""
    applied: tuple[str, ...] = ()
    """Other changes made: creates, config changes, prunes."""
    failed: tuple[str, ...] = ()
    contested: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    error: str | None = None
    """The pass as a whole failed (AWS unreachable, no credentials)."""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
            "seconds": round(self.seconds, 3),
            "leader": self.leader,
            "checked": self.checked,
            "drifted": list(self.drifted),
            "fixed": list(self.fixed),
            "applied": list(self.applied),
            "failed": list(self.failed),
            "contested": list(self.contested),
            "blocked": list(self.blocked),
            "pending": list(self.pending),
            "error": self.error,
        }


@dataclass
class _Findings:
    drifted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    contested: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


class Reconciler:
    """The passes of one configuration (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        services: Services,
        *,
        leadership: Leadership | None = None,
        stop: StopToken | None = None,
        wait: Callable[[float], Awaitable[bool]] | None = None,
        log: Any = log,
    ) -> None:
        self.config = config
        self.res = config.resources
        self.services = services
        self.leadership: Leadership = leadership or (
            LeaseLeadership(config, services, self._context, log=log)
            if self.res.lease_table
            else SingleDaemon()
        )
        self.stop = stop
        self.wait = wait
        self.log = log
        self.flaps = FlapTracker(threshold=self.res.flap_threshold, window=self.res.flap_window)
        self.seen: set[str] = set()
        """Resources this reconciler saw as declared (in sync, or after applying them)."""
        self._reported: dict[str, str] = {}
        self._ctx: Context | None = None
        m = services.metrics
        self._passes = m.counter(
            "awsd_reconciler_passes_total", "Reconcile passes by result", ("result",)
        )
        self._pass_seconds = m.histogram(
            "awsd_reconciler_pass_seconds", "Duration of a reconcile pass"
        ).labels()
        self._drift = m.counter(
            "awsd_reconciler_drift_total", "Drifted resources found, per pass", ("kind",)
        )
        self._fixes = m.counter(
            "awsd_reconciler_fixes_total", "Changes applied, by result", ("kind", "result")
        )
        self._state = m.gauge(
            "awsd_reconciler_resources",
            "Declared resources by state after the last pass",
            ("state",),
        )
        self._last_pass = m.gauge(
            "awsd_reconciler_last_pass_timestamp_seconds", "Unix time of the last completed pass"
        ).labels()

    async def close(self) -> None:
        """Give the lease up (if any), so another daemon need not wait for it to expire."""
        await self.leadership.release()

    async def _context(self) -> Context:
        if self._ctx is None:
            ctx = Context(self.config, self.services.clients, stop=self.stop, wait=self.wait)
            await ctx.start()
            self._ctx = ctx
        return self._ctx

    async def run_pass(self) -> PassResult:
        loop = asyncio.get_running_loop()
        began, wall = loop.time(), time.time()
        if not await self.leadership.is_leader():
            self._passes.labels(result="standby").inc()
            self.log.debug("not the leader; another daemon reconciles")
            return PassResult(wall, 0.0, leader=False)
        try:
            ctx = await self._context()
            plan = await make_plan(ctx)
            findings = self._report(plan, loop.time())
            enforce = self.res.mode == "enforce" and await self.leadership.is_leader()
            report = await self._enforce(ctx, plan) if enforce else None
        except Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed pass is logged and retried
            error = explain(exc)
            self._passes.labels(result="failed").inc()
            self.log.error("reconcile pass failed", error=error)
            return PassResult(wall, loop.time() - began, error=error)
        result = self._result(plan, findings, report, wall, loop.time() - began)
        self._record(result)
        return result

    # --- reporting ----------------------------------------------------------------------------

    def _report(self, plan: Plan, now: float) -> _Findings:
        found = _Findings()
        for failure in plan.failures:
            found.failed.append(failure.resource)
            self.log.error(
                "resource cannot be read", resource=failure.resource, error=failure.error
            )
        for res in plan.resources:
            if res.action == "no-op":
                self.seen.add(res.resource)
                self.flaps.clear(res.resource)
                self._reported.pop(res.resource, None)
                continue
            if res.blocked:
                found.blocked.append(res.resource)
                self.log.warning(
                    "change blocked", resource=res.resource, action=res.action, reason=res.blocked
                )
            if self._is_drift(res):
                found.drifted.append(res.resource)
                self._drift.labels(kind=res.kind).inc()
                self.log.warning(
                    "drift detected",
                    resource=res.resource,
                    physical=res.physical,
                    action=res.action,
                    changes=[_change_text(i.path, i.expected, i.actual) for i in res.items],
                    mode=self.res.mode,
                )
            contest = self.flaps.contested(res.resource, now)
            if contest is not None:
                found.contested.append(res.resource)
        return found

    def _is_drift(self, res: ResourcePlan) -> bool:
        """In detect mode every difference is drift (nothing else will act on it). In enforce
        mode, only a difference on a resource this worker has seen as declared: its config
        never changes during its life (a reload with other resources builds a new worker), so
        the first difference after a start is the config being applied, not drift."""
        if self.res.mode == "detect":
            return True
        return res.resource in self.seen

    def _publish_drift(self, res: ResourcePlan, fixed: bool) -> None:
        signature = _signature(res)
        if self._reported.get(res.resource) == signature:
            return  # already reported this very drift
        self._reported[res.resource] = signature
        event = ResourceDrifted(
            source=NAME,
            env=self.config.env,
            resource=res.resource,
            physical=res.physical,
            arn=res.arn,
            action=res.action,
            changes=tuple(
                (i.path, value_text(i.expected), value_text(i.actual)) for i in res.items
            ),
            fixed=fixed,
        )
        self.services.events.publish(event)

    # --- enforcing ----------------------------------------------------------------------------

    def _selectable(self, res: ResourcePlan, now: float) -> bool:
        if self.flaps.contested(res.resource, now) is not None:
            return False
        if res.action == "replace" and not self.res.enforce_replace:
            self.log.warning(
                "drift needs a replacement: left to `awsd apply` (enforce_replace is off)",
                resource=res.resource,
            )
            return False
        return True

    async def _enforce(self, ctx: Context, plan: Plan) -> ApplyReport:
        loop = asyncio.get_running_loop()
        now = loop.time()
        applier = Applier(ctx, progress=self._progress)
        report = await applier.apply(plan, select=lambda r: self._selectable(r, now))
        by_address = {r.resource: r for r in plan.resources}
        for outcome in report.outcomes:
            res = by_address[outcome.resource]
            self._fixes.labels(kind=res.kind, result=outcome.result).inc()
            if outcome.result not in ("done", "pending"):
                continue
            self.seen.add(res.resource)
            if res.action == "delete":
                continue
            if self._is_drift(res):
                contest = self.flaps.record(
                    res.resource, _signature(res), tuple(i.path for i in res.items), loop.time()
                )
                if contest is not None:
                    self._contested(res, contest)
        return report

    def _contested(self, res: ResourcePlan, contest: Contest) -> None:
        self.log.warning(
            "resource contested: another tool keeps undoing the fix; no longer fixing it",
            resource=res.resource,
            fixes=contest.fixes,
            window_s=self.res.flap_window,
            paths=list(contest.paths),
        )
        self.services.events.publish(
            ResourceContested(
                source=NAME,
                env=self.config.env,
                resource=res.resource,
                physical=res.physical,
                arn=res.arn,
                fixes=contest.fixes,
                window_s=self.res.flap_window,
                paths=contest.paths,
            )
        )

    def _progress(
        self, stage: str, res: ResourcePlan, detail: str, outcome: Outcome | None
    ) -> None:
        if stage == "wait":
            self.log.info("waiting for AWS", resource=res.resource, reason=detail)
        elif stage == "done" and outcome is not None:
            fields = {
                "resource": res.resource,
                "action": res.action,
                "seconds": round(outcome.seconds, 3),
            }
            if outcome.result == "done":
                self.log.info(f"{res.action} applied", **fields)
            elif outcome.result == "pending":
                self.log.info(
                    f"{res.action} applied, not visible yet", detail=outcome.detail, **fields
                )
            elif outcome.result == "blocked":  # appeared meanwhile, someone else's: as planned
                self.log.warning("change blocked", reason=outcome.detail, **fields)
            else:
                self.log.error(f"{res.action} {outcome.result}", error=outcome.detail, **fields)

    # --- results ------------------------------------------------------------------------------

    def _result(
        self,
        plan: Plan,
        found: _Findings,
        report: ApplyReport | None,
        wall: float,
        seconds: float,
    ) -> PassResult:
        outcomes = report.outcomes if report is not None else ()
        applied = {o.resource: o for o in outcomes}
        for res in plan.resources:
            if res.resource in found.drifted:
                outcome = applied.get(res.resource)
                self._publish_drift(res, fixed=outcome is not None and outcome.result == "done")
        done = [o for o in outcomes if o.result in ("done", "pending")]
        return PassResult(
            at=wall,
            seconds=seconds,
            checked=len(plan.resources) + len(plan.failures),
            drifted=tuple(found.drifted),
            fixed=tuple(o.resource for o in done if o.resource in found.drifted),
            applied=tuple(o.resource for o in done if o.resource not in found.drifted),
            failed=tuple(found.failed + [o.resource for o in outcomes if o.result == "failed"]),
            contested=tuple(sorted(set(found.contested))),
            blocked=tuple(found.blocked + [o.resource for o in outcomes if o.result == "blocked"]),
            pending=tuple(o.resource for o in outcomes if o.result == "pending"),
        )

    def _record(self, result: PassResult) -> None:
        self._passes.labels(result="ok" if result.ok else "failed").inc()
        self._pass_seconds.observe(result.seconds)
        self._last_pass.set(time.time())
        drifted_unfixed = set(result.drifted) - set(result.fixed)
        self._state.labels(state="drifted").set(len(drifted_unfixed))
        self._state.labels(state="contested").set(len(result.contested))
        self._state.labels(state="failed").set(len(result.failed))
        self._state.labels(state="blocked").set(len(result.blocked))
        self._state.labels(state="in_sync").set(
            max(0, result.checked - len(drifted_unfixed) - len(result.failed))
        )
        self.log.info(
            "reconcile pass",
            mode=self.res.mode,
            checked=result.checked,
            drifted=len(result.drifted),
            fixed=len(result.fixed),
            applied=len(result.applied),
            failed=len(result.failed),
            contested=len(result.contested),
            seconds=round(result.seconds, 3),
        )


def _signature(res: ResourcePlan) -> str:
    return json.dumps(
        [res.action, [[i.path, canonical(i.expected)] for i in res.items]],
        sort_keys=True,
        default=str,
    )


def _change_text(path: str, expected: Any, actual: Any) -> str:
    return f"{path or 'resource'}: {value_text(actual)} -> {value_text(expected)}"


class ReconcilerWorker(Worker):
    """Runs reconcile passes until stopped (see the module docstring)."""

    stall_timeout = STALL_TIMEOUT

    def __init__(self, config: Config, services: Services) -> None:
        self.config = config
        self.services = services
        self.reconciler: Reconciler | None = None
        self.last: PassResult | None = None
        self.passes = 0

    async def run(self, ctx: WorkerContext) -> None:
        res = self.config.resources
        reconciler = Reconciler(self.config, self.services, stop=ctx.stop, log=ctx.log)
        self.reconciler = reconciler
        reloads = self.services.events.subscribe(ConfigReloaded, maxsize=4, name=NAME)
        retries = Attempts(Backoff(RETRY_BACKOFF_INITIAL, max(res.interval, RETRY_BACKOFF_INITIAL)))
        try:
            while not ctx.stopping:
                try:
                    self.last = await reconciler.run_pass()
                except Stopped:
                    break
                _drain(reloads)  # a reload announced during the pass is served by it
                self.passes += 1
                ctx.beat()
                if self.last.ok:
                    retries.reset()
                    delay = res.interval * (1 + random.uniform(-res.jitter, res.jitter))
                else:
                    delay = min(res.interval, retries.next_delay())
                if not await self._wait(ctx, reloads, delay):
                    break
        finally:
            reloads.close()
            await reconciler.close()

    async def _wait(self, ctx: WorkerContext, reloads: Any, delay: float) -> bool:
        """Sleep `delay` s, or until a reload; beat meanwhile. False when stopping."""
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        while (left := until - loop.time()) > 0:
            try:
                await ctx.stop.race(asyncio.wait_for(reloads.get(), min(left, BEAT_EVERY)))
            except TimeoutError:
                ctx.beat()
                continue
            except Stopped:
                return False
            _drain(reloads)  # several reloads: one pass
            ctx.log.info("reconciling after a config reload")
            return True
        return not ctx.stopping

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.config.resources.mode, "passes": self.passes}
        if self.last is not None:
            out["leader"] = self.last.leader
            out["last_pass"] = self.last.to_json()
        if self.reconciler is not None:
            now = asyncio.get_running_loop().time()
            out["contested"] = [c.resource for c in self.reconciler.flaps.active(now)]
        return out


def _drain(subscription: Any) -> None:
    while not subscription.queue.empty():
        subscription.queue.get_nowait()


async def prepare(services: Services) -> None:
    """Before the other workers start: one enforcing pass, bounded by `startup_timeout`."""
    config = services.config
    res = config.resources
    if res.mode != "enforce" or not res.reconcile_at_start or not res.declared():
        return
    reconciler = Reconciler(config, services, log=log.bind(worker=NAME))
    try:
        async with asyncio.timeout(res.startup_timeout):
            result = await reconciler.run_pass()
    except TimeoutError:
        log.warning(
            "startup reconcile did not finish in time; workers start now and the reconciler "
            "carries on",
            timeout_s=res.startup_timeout,
        )
        return
    finally:
        await reconciler.close()  # the worker takes the lease over
    if not result.ok:
        log.warning(
            "startup reconcile incomplete; the reconciler retries",
            error=result.error,
            failed=list(result.failed),
        )


def _build(config: Config, services: Services) -> Worker:
    return ReconcilerWorker(config, services)


def specs(config: Config) -> list[WorkerSpec]:
    res = config.resources
    if res.mode == "off" or not res.declared():
        return []
    return [
        WorkerSpec(
            name=NAME,
            kind=NAME,
            fingerprint=fingerprint(res, config.aws, config.env),
            build=partial(_build, config),
        )
    ]


CONTRIBUTORS.append(reconciler_grants)
