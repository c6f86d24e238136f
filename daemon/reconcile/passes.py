"""Reconcile passes: plan, report drift, fix it in enforce mode, and say what happened.

A pass plans (`plan.py`):

- `detect` mode: drift is logged (warning, with the attributes), counted
  (`awsd_reconciler_drift_total`), and published once per distinct drift as a `ResourceDrifted`
  event, which the SNS publisher forwards;
- `enforce` mode: drift is also fixed (`apply.py`), except replacements unless
  `enforce_replace`, blocked changes (ownership, the prune cap) and contested resources: the same
  fix repeated `flap_threshold` times within `flap_window` means another tool fights it, and
  the reconciler stops and publishes `ResourceContested` (`flapping.py`).

A resource that cannot be read or fixed (AccessDenied, AWS down) is logged with the reason and
retried on the next pass; a pass never raises over one resource. Only one daemon of a fleet
reconciles at a time: a pass asks its `Leadership` first (`daemon.core.leadership`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from daemon.base.stop import Stopped, StopToken
from daemon.config.models import Config
from daemon.core.events import ResourceContested, ResourceDrifted
from daemon.core.leadership import Leadership, LeaseLeadership, SingleDaemon
from daemon.core.logs import get_logger
from daemon.reconcile.apply import Applier, ApplyReport, Outcome
from daemon.reconcile.context import Context, explain
from daemon.reconcile.flapping import Contest, FlapTracker
from daemon.reconcile.plan import Plan, ResourcePlan, make_plan
from daemon.reconcile.render import value_text
from daemon.reconcile.results import PassResult
from daemon.resources.diff import canonical
from daemon.resources.kind import ownership_tags
from daemon.services import Services

log = get_logger()

NAME = "reconciler"


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
        self.leadership: Leadership = leadership or self._leadership(log)
        self.stop = stop
        self.wait = wait
        self.log = log
        self.flaps = FlapTracker(threshold=self.res.flap_threshold, window=self.res.flap_window)
        self.seen: set[str] = set()
        """Resources this reconciler saw as declared (in sync, or after applying them)."""
        self._reported: dict[str, str] = {}
        self.outputs: dict[str, dict[str, str]] = {}
        """What AWS reports about each declared resource beyond its config (`Observed.outputs`),
        as of the last pass: a distribution's `status` going `InProgress` -> `Deployed`."""
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

    def _leadership(self, log: Any) -> Leadership:
        res, lease_table = self.res, self.res.lease_table
        if lease_table is None:
            return SingleDaemon()

        async def table() -> str:
            return await self.services.targets.aws_name("tables", lease_table)

        return LeaseLeadership(
            self.services.clients,
            table=table,
            key=f"{NAME}:{self.config.env}",
            failover=res.lease_failover,
            tags=ownership_tags(self.config.env) if lease_table in res.tables else None,
            log=log,
        )

    async def close(self) -> None:
        """Give the lease up (if any), so another daemon need not wait for it to expire."""
        await self.leadership.release()

    async def _context(self) -> Context:
        if self._ctx is None:
            ctx = Context(
                self.config,
                self.services.clients,
                stop=self.stop,
                wait=self.wait,
                used=self.services.references,
                targets=self.services.targets,
            )
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
        self._watch_outputs(plan)
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

    def _watch_outputs(self, plan: Plan) -> None:
        """Log what changed in the outputs since the last pass: apply returns once AWS took a
        change (a distribution update), and this is where its deployment is seen finishing."""
        for res in plan.resources:
            if not res.outputs or res.observed is None:
                continue
            now = dict(res.outputs)
            before = self.outputs.get(res.resource)
            self.outputs[res.resource] = now
            for name, value in now.items():
                old = (before or {}).get(name)
                if before is not None and old != value:
                    self.log.info(
                        f"{res.resource} {name}: {old} -> {value}",
                        resource=res.resource,
                        output=name,
                        before=old,
                        after=value,
                    )

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
