"""What the reconciler worker needs from IAM, by mode, scoped to the declared resources.

- `detect`: the read actions of each declared resource's kind, on its ARNs;
- `enforce`: also the write actions (and, with `enforce_replace`, deleting declared resources);
- `lease_table`: reading and conditionally writing the lease item (and creating the table);
- `prune = true`: listing each kind (AWS cannot scope List* calls), reading the tags of what the
  listing returns, and in enforce mode deleting, on the ARNs the name template can produce
  (`arn:...:sqs:...:local-*` for `{env}-{name}`). A resource declared with its own `name` and
  later removed from the file falls outside that pattern: the daemon then logs AccessDenied
  for it, and `awsd apply` (with an operator's credentials) deletes it.

The operator running `awsd apply` uses their own credentials; this is the daemon's policy.
"""

from __future__ import annotations

from daemon.config.models import Config
from daemon.config.resources import KIND, KINDS, render_template
from daemon.core.iam import Grant, Scope

COMPONENT = "reconciler"
LEASE_ACTIONS = (
    "dynamodb:DescribeTable",
    "dynamodb:CreateTable",  # the lease table is created on first use
    "dynamodb:TagResource",  # ...with awsd's ownership tags when it is declared
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)


def reconciler_grants(config: Config, scope: Scope) -> list[Grant]:
    res = config.resources
    if res.mode == "off" or not res.declared():
        return []
    enforce = res.mode == "enforce"
    grants: list[Grant] = []
    if res.lease_table:
        grants.append(
            Grant(
                COMPONENT,
                LEASE_ACTIONS,
                (scope.arn_of("tables", res.lease_table),),
                sid="ReconcilerLease",
            )
        )
    for adapter in KINDS:
        kind = adapter.name
        arns = sorted(
            {
                arn
                for name in res.of_kind(kind)
                for arn in adapter.arn_patterns(scope.declared(kind, name).physical, scope)
            }
        )
        title = "Reconciler" + kind.title().replace("_", "")
        actions: list[tuple[tuple[str, ...], list[str]]] = []
        if arns:
            actions += [(adapter.read_actions, arns), (adapter.unscoped_read_actions, ["*"])]
            if enforce:
                actions += [(adapter.write_actions, arns), (adapter.unscoped_write_actions, ["*"])]
            if enforce and res.enforce_replace and adapter.replace_paths:
                actions.append((adapter.delete_actions, arns))
        if res.prune:
            owned = _template_arns(config, scope, kind)
            actions += [(adapter.list_actions, ["*"]), (adapter.tag_read_actions, owned)]
            if enforce:
                actions += [(adapter.read_actions + adapter.delete_actions, owned)]
        grants += [
            Grant(COMPONENT, acts, tuple(resources), sid=_sid(title, resources, arns))
            for acts, resources in actions
            if acts
        ]
    return grants


def _sid(title: str, resources: list[str], declared: list[str]) -> str:
    if resources == declared:
        return title
    return f"{title}Prune" if resources != ["*"] else ""


def _template_arns(config: Config, scope: Scope, kind: str) -> list[str]:
    """ARN patterns of every name `resources.name_template` can give in this environment."""
    pattern = render_template(
        config.resources.name_template,
        env=config.env,
        name="*",
        region=scope.region,
        account=scope.account,
    )
    return KIND[kind].arn_patterns(pattern, scope)
