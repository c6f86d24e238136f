"""Planning: what applying the config would change, resource by resource, attribute by attribute.

A plan is a value. Reading the account never changes it; every declared resource is read
concurrently (each service within its concurrency limit), compared through `diff.py`, and gets
one action: create, update, replace, delete or no-op, with one `PlanItem` per attribute.

Ownership decides what may happen to an existing resource:
- tagged `managed-by = awsd` and `awsd:env = <env>`: ours;
- untagged: adopted (the plan shows the ownership tags being added);
- tagged for another environment or by another tool: blocked, never changed;
- only ours can be replaced or deleted, and deletions (of owned resources no longer declared,
  with `prune = true`) are all blocked when there are more than `max_deletes` of them.

A resource that cannot be read (a permission missing, AWS down) is a failure of the plan, not a
create: awsd never proposes to create what it merely could not see.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from daemon.config.references import used_by
from daemon.config.resources import KIND, KINDS
from daemon.reconcile.context import Context, explain
from daemon.resources.diff import Change, diff, plain, top_level
from daemon.resources.kind import (
    ENV_TAG,
    OWNER_TAG,
    OWNER_VALUE,
    Declared,
    Found,
    Observed,
    owned_by,
)

Action = Literal["create", "update", "replace", "delete", "no-op"]
KNOWN_AFTER_APPLY = "(known after apply)"
ACTIONS: tuple[Action, ...] = ("create", "update", "replace", "delete", "no-op")


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One attribute of one resource: what the config says and what AWS has."""

    resource: str
    action: Action
    path: str
    """Attribute path in the config's vocabulary (`visibility_timeout`, `tags.team`);
    empty for the resource as a whole."""
    expected: Any
    actual: Any
    forces_replacement: bool = False

    def to_json(self) -> dict[str, Any]:
        out = {
            "resource": self.resource,
            "action": self.action,
            "path": self.path,
            "expected": plain(self.expected),
            "actual": plain(self.actual),
        }
        if self.forces_replacement:
            out["forces_replacement"] = True
        return out


@dataclass(frozen=True, slots=True)
class ResourcePlan:
    """What happens to one resource."""

    resource: str
    """Address: `queue.readings` (declared), `queue.local-old` (undeclared, by AWS name)."""
    kind: str
    name: str
    """Logical name; empty for an undeclared resource."""
    physical: str
    arn: str
    action: Action
    items: tuple[PlanItem, ...] = ()
    note: str = ""
    """Something the operator should know (adopting an untagged resource, ...)."""
    blocked: str = ""
    """Why this change will not be applied; empty when it will."""
    used_by: tuple[str, ...] = ()
    outputs: tuple[tuple[str, str], ...] = ()
    """(name, value) of what AWS assigned or reports (`Observed.outputs`): a file system's DNS
    name, a distribution's domain name and status. Never compared."""
    declared: Declared | None = field(default=None, compare=False, repr=False)
    observed: Observed | None = field(default=None, compare=False, repr=False)
    found: Found | None = field(default=None, compare=False, repr=False)
    desired: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def changes(self) -> bool:
        return self.action != "no-op" and not self.blocked

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "resource": self.resource,
            "kind": self.kind,
            "name": self.name,
            "physical": self.physical,
            "arn": self.arn,
            "action": self.action,
            "note": self.note,
            "blocked": self.blocked,
            "used_by": list(self.used_by),
        }
        if self.outputs:
            out["outputs"] = dict(self.outputs)
        return out


@dataclass(frozen=True, slots=True)
class ReadFailure:
    """A resource (or a kind, while listing for pruning) that could not be read."""

    resource: str
    error: str

    def to_json(self) -> dict[str, str]:
        return {"resource": self.resource, "error": self.error}


@dataclass(frozen=True, slots=True)
class Plan:
    env: str
    region: str
    account: str
    resources: tuple[ResourcePlan, ...]
    failures: tuple[ReadFailure, ...] = ()

    @property
    def changes(self) -> tuple[ResourcePlan, ...]:
        """The resources `apply` would change."""
        return tuple(r for r in self.resources if r.changes)

    @property
    def blocked(self) -> tuple[ResourcePlan, ...]:
        return tuple(r for r in self.resources if r.blocked)

    @property
    def items(self) -> tuple[PlanItem, ...]:
        out: list[PlanItem] = []
        for res in self.resources:
            out += res.items or (PlanItem(res.resource, res.action, "", None, None),)
        return tuple(out)

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(ACTIONS, 0)
        for res in self.resources:
            if not res.blocked:
                counts[res.action] += 1
        counts["blocked"] = len(self.blocked)
        counts["failed"] = len(self.failures)
        return counts

    @property
    def exit_code(self) -> int:
        """`awsd plan`: 0 nothing to do, 2 changes to apply, 1 something needs a person."""
        if self.failures or self.blocked:
            return 1
        return 2 if self.changes else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": "1",
            "env": self.env,
            "region": self.region,
            "account": self.account,
            "changes": bool(self.changes),
            "summary": self.summary(),
            "resources": [r.to_json() for r in self.resources],
            "items": [i.to_json() for i in self.items],
            "errors": [f.to_json() for f in self.failures],
        }


async def make_plan(
    ctx: Context, *, prune: bool | None = None, only: set[tuple[str, str]] | None = None
) -> Plan:
    """Read every declared resource (`only` some: (kind, logical name)) and, with prune, list
    the account; compare."""
    config = ctx.config
    declared = [
        ctx.declared(kind, name)
        for kind, name, _ in config.resources.declared()
        if only is None or (kind, name) in only
    ]
    users = used_by(ctx.references)
    # Kinds whose ARNs hold ids AWS assigns are read first: what the others generate (a bucket
    # policy letting one distribution read) names their real ARNs.
    first = [res for res in declared if KIND[res.kind].assigns_ids]
    planned = list(await asyncio.gather(*(_plan_one(ctx, res, users) for res in first)))
    for done in planned:
        if isinstance(done, ResourcePlan) and done.observed is not None:
            ctx.learn(done.kind, done.name, done.observed.arn)
    rest = [res for res in declared if not KIND[res.kind].assigns_ids]
    planned += await asyncio.gather(*(_plan_one(ctx, res, users) for res in rest))
    resources = [p for p in planned if isinstance(p, ResourcePlan)]
    failures = [p for p in planned if isinstance(p, ReadFailure)]
    if config.resources.prune if prune is None else prune:
        deletes, listing_failures = await _plan_deletes(ctx, declared)
        resources += deletes
        failures += listing_failures
    return Plan(ctx.env, ctx.region, ctx.account, tuple(resources), tuple(failures))


async def _plan_one(
    ctx: Context, res: Declared, users: dict[tuple[str, str], tuple[str, ...]]
) -> ResourcePlan | ReadFailure:
    adapter = KIND[res.kind]
    try:
        desired = adapter.desired(res, ctx)
        observed = await adapter.read(ctx, res)
    except Exception as exc:  # noqa: BLE001 - any read failure is reported per resource
        return ReadFailure(res.address, explain(exc))
    base = ResourcePlan(
        resource=res.address,
        kind=res.kind,
        name=res.name,
        physical=res.physical,
        arn=(observed.arn if observed is not None else None) or res.arn,
        action="no-op",
        used_by=users.get((res.kind, res.name), ()),
        outputs=tuple(sorted(observed.outputs.items())) if observed is not None else (),
        declared=res,
        observed=observed,
        desired=desired,
    )
    if observed is None:
        items = tuple(
            PlanItem(res.address, "create", key, value, None)
            for key, value in desired.items()
            if _worth_showing(key, value)
        )
        later = tuple((name, KNOWN_AFTER_APPLY) for name in adapter.outputs_after_create)
        return dataclasses.replace(base, action="create", items=items, outputs=later)
    compared = adapter.compared(res)
    want = {k: v for k, v in desired.items() if k in compared}
    changes = diff(want, observed.state, ignore=res.spec.ignore)
    if not changes:
        return base
    replace = any(top_level(c.path) in adapter.replace_paths for c in changes)
    action: Action = "replace" if replace else "update"
    items = tuple(_item(res.address, action, c, adapter.replace_paths) for c in changes)
    note, blocked = ownership(ctx, observed, action)
    return dataclasses.replace(base, action=action, items=items, note=note, blocked=blocked)


def _worth_showing(key: str, value: Any) -> bool:
    """Creates list what they set; unset values and `fifo = false` are noise."""
    if value is None or value in ([], {}, ""):
        return False
    return not (key == "fifo" and value is False)


def _item(resource: str, action: Action, change: Change, replace: frozenset[str]) -> PlanItem:
    forces = top_level(change.path) in replace
    return PlanItem(resource, action, change.path, change.expected, change.actual, forces)


def ownership(ctx: Context, observed: Observed, action: Action) -> tuple[str, str]:
    """(note, blocked) for a change to an existing resource. The applier asks the same when a
    resource planned as a create turns out to exist (someone created it meanwhile)."""
    tags = observed.tags
    owner, env = tags.get(OWNER_TAG), tags.get(ENV_TAG)
    if owner not in (None, OWNER_VALUE):
        return (
            "",
            f"tagged {OWNER_TAG} = {owner!r}: another tool manages it; awsd will not touch it",
        )
    if env not in (None, ctx.env):
        return "", (
            f"belongs to awsd environment {env!r} (this is {ctx.env!r}); give the environments "
            "different names, e.g. with {env} in resources.name_template"
        )
    if owned_by(tags, ctx.env):
        return "", ""
    if action == "replace":
        return "", "exists without awsd's tags: awsd replaces only what it created"
    return "adopting: it exists without awsd's ownership tags, which will be added", ""


async def _plan_deletes(
    ctx: Context, declared: list[Declared]
) -> tuple[list[ResourcePlan], list[ReadFailure]]:
    names = {(res.kind, res.physical) for res in declared}
    protected = {ref.value for ref in ctx.references if ref.external}
    listed = await asyncio.gather(*(_discover(ctx, kind.name) for kind in KINDS))
    deletes: list[ResourcePlan] = []
    failures: list[ReadFailure] = []
    for result in listed:
        if isinstance(result, ReadFailure):
            failures.append(result)
            continue
        for found in result:
            if (found.kind, found.physical) in names or found.arn in protected:
                continue
            if not owned_by(found.tags, ctx.env):  # the adapters filter; this is the proof
                continue
            address = f"{KIND[found.kind].singular}.{found.physical}"
            item = PlanItem(address, "delete", "", None, found.arn)
            steps = KIND[found.kind].delete_note(found)
            deletes.append(
                ResourcePlan(
                    resource=address,
                    kind=found.kind,
                    name="",
                    physical=found.physical,
                    arn=found.arn,
                    action="delete",
                    items=(item,),
                    note=f"owned by awsd (env {ctx.env}) and no longer declared"
                    + (f"; {steps}" if steps else ""),
                    found=found,
                )
            )
    limit = ctx.config.resources.max_deletes
    if len(deletes) > limit:
        reason = (
            f"{len(deletes)} deletions exceed resources.max_deletes = {limit}: none is applied "
            "(raise max_deletes if this is intended)"
        )
        deletes = [_with_blocked(d, reason) for d in deletes]
    return deletes, failures


def _with_blocked(plan: ResourcePlan, reason: str) -> ResourcePlan:
    return dataclasses.replace(plan, blocked=reason)


async def _discover(ctx: Context, kind: str) -> list[Found] | ReadFailure:
    try:
        return await KIND[kind].discover(ctx)
    except Exception as exc:  # noqa: BLE001 - reported; pruning of this kind waits
        return ReadFailure(f"{kind} (listing for prune)", explain(exc))
