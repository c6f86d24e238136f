"""Plans and apply progress for people: a Terraform-like text, plus the JSON of `--json`.

    ~ queue.readings (local-readings)
        ~ visibility_timeout = 60 -> 30

    Plan: 0 to create, 1 to update, 0 to replace, 0 to delete.

Symbols: `+` create, `~` update, `-/+` replace, `-` delete, `!` blocked, `?` unreadable.
Long values (policies) are printed as indented JSON, and changes to them as a line diff.
Output is deterministic (sorted by kind, then name) so it can be kept in golden files.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from daemon.config.resources import KIND, KINDS
from daemon.reconcile.apply import ApplyReport, Outcome
from daemon.reconcile.plan import ACTIONS, Plan, PlanItem, ResourcePlan
from daemon.resources.diff import plain

SYMBOLS = {"create": "+", "update": "~", "replace": "-/+", "delete": "-", "no-op": " "}
VERBS = {
    "create": ("creating", "created"),
    "update": ("updating", "updated"),
    "replace": ("replacing", "replaced"),
    "delete": ("deleting", "deleted"),
    "no-op": ("checking", "unchanged"),
}
INLINE_LIMIT = 64
INDENT = "      "


def value_text(value: Any) -> str:
    """A value as it reads in the plan: JSON for strings, numbers, lists and tables."""
    if value is None:
        return "(none)"
    return json.dumps(plain(value), sort_keys=True, separators=(", ", ": "), default=str)


def _pretty(value: Any) -> list[str]:
    return json.dumps(plain(value), sort_keys=True, indent=2, default=str).splitlines()


def _item_lines(item: PlanItem, width: int) -> list[str]:
    path = item.path.ljust(width)
    suffix = "  # forces replacement" if item.forces_replacement else ""
    expected, actual = value_text(item.expected), value_text(item.actual)
    if item.actual is None:
        symbol, text = "+", expected
    elif item.expected is None and item.action == "update":
        symbol, text = "-", actual
    else:
        symbol, text = "~", f"{actual} -> {expected}"
    if len(text) <= INLINE_LIMIT:
        return [f"{INDENT}{symbol} {path} = {text}{suffix}"]
    lines = [f"{INDENT}{symbol} {item.path}{suffix}"]
    if item.actual is None:
        return lines + [f"{INDENT}    {line}" for line in _pretty(item.expected)]
    diff = difflib.unified_diff(_pretty(item.actual), _pretty(item.expected), lineterm="", n=2)
    body = [line for line in diff if not line.startswith(("---", "+++"))]
    return lines + [f"{INDENT}    {line}" for line in body]


def _header(res: ResourcePlan) -> str:
    symbol = "!" if res.blocked else SYMBOLS[res.action]
    name = res.resource if not res.name else f"{res.resource} ({res.physical})"
    line = f"{symbol:>3} {name}"
    if res.action == "replace" and not res.blocked:
        line += "  must be replaced"
    return line


def _resource_lines(res: ResourcePlan) -> list[str]:
    lines = [_header(res)]
    if res.blocked:
        lines.append(f"{INDENT}# blocked ({res.action}): {res.blocked}")
    if res.note:
        lines.append(f"{INDENT}# {res.note}")
    if res.used_by:
        lines.append(f"{INDENT}# used by {', '.join(res.used_by)}")
    if res.action == "delete":
        lines.append(f"{INDENT}# {res.arn}")
        return lines
    width = max((len(i.path) for i in res.items), default=0)
    for item in res.items:
        lines += _item_lines(item, width)
    return lines


def _order(res: ResourcePlan) -> tuple[int, int, str]:
    return (res.action == "delete", KINDS.index(KIND[res.kind]), res.resource)


def render_plan(plan: Plan) -> str:
    """The plan as text (ends with the summary line)."""
    lines = [f"awsd plan: env {plan.env}, account {plan.account}, region {plan.region}", ""]
    shown = sorted((r for r in plan.resources if r.action != "no-op" or r.blocked), key=_order)
    for res in shown:
        lines += [*_resource_lines(res), ""]
    for failure in sorted(plan.failures, key=lambda f: f.resource):
        lines += [f"  ? {failure.resource}", f"{INDENT}# cannot be read: {failure.error}", ""]
    lines += _outputs_lines(plan)
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def _outputs_lines(plan: Plan) -> list[str]:
    """What AWS assigned to the declared resources (DNS names, deployment status), so the plan
    also tells where to point a mount or a browser."""
    shown = sorted((r for r in plan.resources if r.outputs and r.action != "delete"), key=_order)
    if not shown:
        return []
    lines = ["Outputs:"]
    for res in shown:
        values = ", ".join(f"{name} = {value}" for name, value in res.outputs)
        lines.append(f"  {res.resource}: {values}")
    return [*lines, ""]


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    if not plan.changes and not plan.blocked and not plan.failures:
        n = counts["no-op"]
        verb = "matches" if n == 1 else "match"
        return f"No changes. {_count(n, 'resource')} {verb} the configuration."
    text = (
        f"Plan: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['replace']} to replace, {counts['delete']} to delete."
    )
    if plan.blocked:
        text += f" {_count(len(plan.blocked), 'change')} blocked."
    if plan.failures:
        text += f" {_count(len(plan.failures), 'resource')} could not be read."
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def render_progress(
    stage: str, res: ResourcePlan, detail: str, outcome: Outcome | None = None
) -> str:
    """One line per step of `awsd apply`."""
    doing, done = VERBS[res.action]
    if stage == "start":
        return f"{res.resource}: {doing}..."
    if stage == "wait":
        return f"{res.resource}: {detail}"
    if outcome is None or outcome.result == "done":
        seconds = f" [{outcome.seconds:.1f}s]" if outcome else ""
        return f"{res.resource}: {done}{seconds}"
    if outcome.result == "pending" and res.action == "delete":
        return f"{res.resource}: deletion started: {outcome.detail}"
    if outcome.result == "pending":
        return f"{res.resource}: {done}, not yet visible: {outcome.detail}"
    return f"{res.resource}: {res.action} {outcome.result}: {outcome.detail}"


def render_apply_summary(report: ApplyReport) -> str:
    done = {a: report.count("done", a) + report.count("pending", a) for a in ACTIONS}
    deleting = report.count("pending", "delete")
    done["delete"] -= deleting
    text = (
        f"{done['create']} created, {done['update']} updated, {done['replace']} replaced, "
        f"{done['delete']} deleted"
    )
    failed, skipped = report.count("failed"), report.count("skipped")
    pending, blocked = report.count("pending") - deleting, report.count("blocked")
    extra = []
    if failed:
        extra.append(f"{failed} failed")
    if blocked:
        extra.append(f"{blocked} blocked (not awsd's)")
    if skipped:
        extra.append(f"{skipped} skipped")
    if pending:
        extra.append(f"{pending} not yet visible (the next plan checks again)")
    if deleting:
        extra.append(f"{deleting} deletion(s) started (a later pass completes them)")
    head = "Apply complete" if report.ok else "Apply finished with errors"
    return f"{head}: {text}" + (f"; {', '.join(extra)}." if extra else ".")
