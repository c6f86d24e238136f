"""Applying a plan: create, update, replace and delete, in dependency order, and verify.

Order: a resource waits for the resources it refers to (a queue for its dead-letter queue, a
topic for the queues it subscribes, an alarm for its topics, a bucket for its log bucket);
independent resources go concurrently. Deletions come last, dependents first. A resource whose
dependency failed is skipped, with the reason.

Every change is verified: the resource is read back, with backoff, until AWS shows the declared
state (AWS is eventually consistent; SQS attributes take up to a minute). A create that cannot
set everything at once (S3 settings, tags) is followed by an update from what was read back.
When the change is still not visible after `converge_timeout`, the outcome is `pending`: the
next pass looks again. When AWS asks to wait (a queue deleted less than 60 s ago), the applier
waits through `Context.wait`, so a stop request interrupts it and tests need not wait a minute.

A create is planned on a resource that did not exist; it may exist by the time it is applied
(another daemon, a person, another tool created it meanwhile). Before creating, and on every
read-back after, the applier judges what it finds by the plan's ownership rule (`plan.ownership`):
untagged or ours, it is adopted and converged as declared; tagged by another tool or for another
environment, it is left untouched and the outcome is `blocked`, like a change blocked at planning.
The adapters' creates treat "already exists" as success for this reason: the check is here, once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from daemon.base.retry import Backoff, retry
from daemon.base.stop import Stopped
from daemon.config.resources import KIND, KINDS
from daemon.reconcile.context import Context, explain
from daemon.reconcile.plan import Action, Plan, PlanItem, ResourcePlan, make_plan, ownership
from daemon.resources.diff import Change, diff, top_level
from daemon.resources.kind import (
    Declared,
    DeletePending,
    Found,
    Observed,
    ResourceFailed,
    RetryAfter,
)

Result = Literal["done", "pending", "failed", "skipped", "blocked"]
CONVERGE_BACKOFF = Backoff(initial=0.1, maximum=3.0)
MAX_WAITS = 3  # RetryAfter rounds before giving up on a create
REPLACE_GONE_BUDGET = 300.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What applying one resource plan did."""

    resource: str
    action: Action
    result: Result
    detail: str = ""
    seconds: float = 0.0
    remaining: tuple[PlanItem, ...] = ()
    """Attributes AWS did not show as declared yet (result `pending`)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "action": self.action,
            "result": self.result,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
            "remaining": [i.to_json() for i in self.remaining],
        }


@dataclass(frozen=True, slots=True)
class ApplyReport:
    outcomes: tuple[Outcome, ...]

    def count(self, result: Result, action: Action | None = None) -> int:
        return sum(
            1
            for o in self.outcomes
            if o.result == result and (action is None or o.action == action)
        )

    @property
    def ok(self) -> bool:
        return not any(o.result in ("failed", "skipped", "blocked") for o in self.outcomes)


Progress = Callable[[str, ResourcePlan, str, "Outcome | None"], None]
"""Called with ("start" | "wait" | "done", the resource plan, a detail text, the outcome)."""


def _no_progress(_stage: str, _plan: ResourcePlan, _detail: str, _outcome: Outcome | None) -> None:
    return None


class _Blocked(Exception):
    """The resource to create exists and belongs to someone else: not touched."""


class _Unconverged(Exception):
    def __init__(self, changes: list[Change]) -> None:
        super().__init__(f"{len(changes)} attributes differ")
        self.changes = changes


class Applier:
    """Applies the changes of a plan (see the module docstring)."""

    def __init__(
        self,
        ctx: Context,
        *,
        progress: Progress | None = None,
        converge_timeout: float | None = None,
    ) -> None:
        self.ctx = ctx
        self.progress = progress or _no_progress
        self.converge_timeout = (
            ctx.config.resources.converge_timeout if converge_timeout is None else converge_timeout
        )
        self._learned: set[str] = set()

    async def apply(
        self, plan: Plan, *, select: Callable[[ResourcePlan], bool] | None = None
    ) -> ApplyReport:
        report = await self._apply(plan, select)
        # A resource whose ARN holds an id AWS assigned was created: the resources it refers to
        # generate content from that ARN (the bucket policy letting one distribution read), so
        # they are planned again, now with it, and applied in the same run.
        again = {
            (ref.kind, ref.value)
            for ref in self.ctx.references
            if ref.user in self._learned and not ref.external
        }
        self._learned = set()
        if not again:
            return report
        more = await self._apply(await make_plan(self.ctx, prune=False, only=again), select)
        return ApplyReport(report.outcomes + more.outcomes)

    async def _apply(
        self, plan: Plan, select: Callable[[ResourcePlan], bool] | None
    ) -> ApplyReport:
        todo = [r for r in plan.changes if select is None or select(r)]
        deletes = [r for r in todo if r.action == "delete"]
        others = [r for r in todo if r.action != "delete"]
        outcomes: dict[str, Outcome] = {}
        deps = _dependencies(self.ctx, {r.resource for r in others})
        for level in _levels(others, deps):
            results = await asyncio.gather(*(self._guarded(r, deps, outcomes) for r in level))
            outcomes.update((o.resource, o) for o in results)
        order = {kind.name: i for i, kind in enumerate(KINDS)}
        for res in sorted(deletes, key=lambda r: -order[r.kind]):
            outcomes[res.resource] = await self._one(res)
        return ApplyReport(tuple(outcomes[r.resource] for r in todo if r.resource in outcomes))

    async def _guarded(
        self, res: ResourcePlan, deps: dict[str, set[str]], done: dict[str, Outcome]
    ) -> Outcome:
        failed = sorted(
            d
            for d in deps.get(res.resource, ())
            if done.get(d) and done[d].result in ("failed", "skipped")
        )
        if failed:
            outcome = Outcome(
                res.resource, res.action, "skipped", f"depends on {', '.join(failed)}, which failed"
            )
            self.progress("done", res, outcome.detail, outcome)
            return outcome
        return await self._one(res)

    async def _one(self, res: ResourcePlan) -> Outcome:
        loop = asyncio.get_running_loop()
        began = loop.time()
        self.progress("start", res, "", None)
        try:
            if self.ctx.stop is not None and self.ctx.stop.stopping:
                raise Stopped
            remaining = await self._dispatch(res)
        except Stopped:
            outcome = Outcome(res.resource, res.action, "skipped", "stopping", loop.time() - began)
        except _Blocked as exc:
            outcome = Outcome(res.resource, res.action, "blocked", str(exc), loop.time() - began)
        except DeletePending as exc:  # a first step done; a later pass finishes the deletion
            outcome = Outcome(res.resource, res.action, "pending", str(exc), loop.time() - began)
        except Exception as exc:  # noqa: BLE001 - one resource failing never stops the others
            outcome = Outcome(res.resource, res.action, "failed", explain(exc), loop.time() - began)
        else:
            items = tuple(
                PlanItem(res.resource, res.action, c.path, c.expected, c.actual) for c in remaining
            )
            if items:
                detail = "applied; AWS does not show it yet (eventual consistency): " + ", ".join(
                    i.path for i in items
                )
                outcome = Outcome(
                    res.resource, res.action, "pending", detail, loop.time() - began, items
                )
            else:
                outcome = Outcome(res.resource, res.action, "done", "", loop.time() - began)
        self.progress("done", res, outcome.detail, outcome)
        return outcome

    async def _dispatch(self, res: ResourcePlan) -> list[Change]:
        adapter = KIND[res.kind]
        if res.action == "delete":
            assert res.found is not None
            await adapter.delete(self.ctx, res.found)
            return []
        declared, desired = res.declared, res.desired
        assert declared is not None and desired is not None
        if res.action == "update":
            assert res.observed is not None
            changed = {top_level(i.path) for i in res.items}
            await adapter.update(self.ctx, declared, res.observed, desired, changed)
            return await self._converge(declared, desired, updated=True)
        if res.action == "replace":
            assert res.observed is not None
            await self._remove(declared, adapter.found(declared, res.observed))
        if not await self._exists_and_may_be_adopted(declared):
            await self._create(res, declared, desired)
        return await self._converge(declared, desired, updated=False, created=True)

    async def _exists_and_may_be_adopted(self, declared: Declared) -> bool:
        """False when the resource still does not exist; True when it appeared and may be
        adopted; `_Blocked` when it appeared and belongs to someone else."""
        observed = await KIND[declared.kind].read(self.ctx, declared)
        if observed is None:
            return False
        self._check_owner(observed)
        return True

    def _check_owner(self, observed: Observed) -> None:
        _note, blocked = ownership(self.ctx, observed, "create")
        if blocked:
            raise _Blocked(f"appeared after planning; {blocked}")

    async def _remove(self, declared: Declared, found: Found) -> None:
        adapter = KIND[declared.kind]
        await adapter.delete(self.ctx, found)

        async def gone() -> bool:
            return await adapter.read(self.ctx, declared) is None

        await self.ctx.poll(
            gone, what=f"{declared.address} being deleted", budget=REPLACE_GONE_BUDGET
        )

    async def _create(self, res: ResourcePlan, declared: Declared, desired: dict[str, Any]) -> None:
        adapter = KIND[declared.kind]
        for _ in range(MAX_WAITS):
            try:
                await adapter.create(self.ctx, declared, desired)
                return
            except RetryAfter as exc:
                self.progress("wait", res, f"{exc.reason}; waiting {exc.seconds:g} s", None)
                if not await self.ctx.wait(exc.seconds):
                    raise Stopped from exc
        raise ResourceFailed(f"AWS still refuses to create it after {MAX_WAITS} waits")

    async def _converge(
        self, declared: Declared, desired: dict[str, Any], *, updated: bool, created: bool = False
    ) -> list[Change]:
        """Read back until AWS shows the declared state; update once from what a create left.
        After a create, what is read back must be ours or untagged: a create that met an
        existing resource (AWS answered "already exists", or re-used it silently) did not make
        it ours."""
        adapter = KIND[declared.kind]
        compared = adapter.compared(declared)
        want = {k: v for k, v in desired.items() if k in compared}
        state = {"updated": updated}

        async def check() -> list[Change]:
            observed = await adapter.read(self.ctx, declared)
            if observed is None:
                raise _Unconverged([Change("", "exists", None)])
            if created:
                self._check_owner(observed)
            if self.ctx.learn(declared.kind, declared.name, observed.arn):
                self._learned.add(declared.address)
            changes = diff(want, observed.state, ignore=declared.spec.ignore)
            if changes and not state["updated"]:
                state["updated"] = True
                changed = {top_level(c.path) for c in changes}
                await adapter.update(self.ctx, declared, observed, desired, changed)
                raise _Unconverged(changes)
            if changes:
                raise _Unconverged(changes)
            return changes

        try:
            return await retry(
                check,
                retry_if=lambda e: isinstance(e, _Unconverged),
                backoff=CONVERGE_BACKOFF,
                budget=max(self.converge_timeout, 0.001),
                stop=self.ctx.stop,
            )
        except _Unconverged as exc:
            return exc.changes


def _dependencies(ctx: Context, addresses: set[str]) -> dict[str, set[str]]:
    """Resource address -> addresses (among those being applied) it must wait for."""
    deps: dict[str, set[str]] = {}
    for ref in ctx.references:
        if ref.external or ref.user not in addresses:
            continue
        target = f"{KIND[ref.kind].singular}.{ref.value}"
        if target in addresses and target != ref.user:
            deps.setdefault(ref.user, set()).add(target)
    return deps


def _levels(plans: list[ResourcePlan], deps: dict[str, set[str]]) -> list[list[ResourcePlan]]:
    """Group plans so every resource comes after the ones it depends on (cycles: same level)."""
    depth: dict[str, int] = {}

    def level_of(address: str, seen: frozenset[str]) -> int:
        if address in depth:
            return depth[address]
        parents = [d for d in deps.get(address, ()) if d not in seen]
        value = 1 + max((level_of(p, seen | {address}) for p in parents), default=-1)
        depth[address] = value
        return value

    levels: dict[int, list[ResourcePlan]] = {}
    for res in plans:
        levels.setdefault(level_of(res.resource, frozenset()), []).append(res)
    return [levels[k] for k in sorted(levels)]


def without(plan: Plan, skip: Callable[[ResourcePlan], bool]) -> Plan:
    """The plan minus some resource plans (the worker leaves contested ones alone)."""
    return dataclasses.replace(plan, resources=tuple(r for r in plan.resources if not skip(r)))
