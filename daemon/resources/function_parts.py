"""The parts of a Lambda function that are resources of their own in AWS but belong to one
function in the config: its execution role (IAM), its event source mappings, and its resource
policy's permissions. `functions.py` decides when; these read and write them.

- The role lives under the IAM path `/awsd/`, trusted by `lambda.amazonaws.com`, with one inline
  policy named `awsd`; managed policies are attached and detached to match the declaration.
- Event source mappings are keyed by the source's ARN; one nobody declared is left alone.
- Permissions are keyed by statement id; statements someone else added are left alone, and a
  declared one that differs is removed and added again (Lambda has no update for them).
"""

from __future__ import annotations

import json
from typing import Any

from daemon.resources.diff import equal, is_ignored, join
from daemon.resources.kind import Declared, Observed, Session, tag_list

ROLE_MISSING = frozenset({"NoSuchEntity", "NoSuchEntityException"})
LAMBDA_MISSING = frozenset({"ResourceNotFoundException"})
ROLE_PATH = "/awsd/"
INLINE_POLICY = "awsd"
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


# --- the execution role ---------------------------------------------------------------------


def _document(value: Any) -> Any:
    """IAM returns policy documents URL-decoded by botocore, as JSON text or as a dict."""
    return json.loads(value) if isinstance(value, str) else value


async def read_role(ctx: Session, name: str) -> dict[str, Any]:
    """`{"policy": ..., "managed_policies": [...]}` of the role awsd makes (nothing when the
    role is missing: the function's own `Role` ARN then points nowhere)."""
    role = await ctx.call_or_none(ROLE_MISSING, "iam", "get_role", RoleName=name)
    if role is None:
        return {"policy": None, "managed_policies": []}
    got = await ctx.call_or_none(
        ROLE_MISSING, "iam", "get_role_policy", RoleName=name, PolicyName=INLINE_POLICY
    )
    attached = await ctx.call("iam", "list_attached_role_policies", RoleName=name)
    return {
        "policy": _document(got["PolicyDocument"]) if got else None,
        "managed_policies": sorted(p["PolicyArn"] for p in attached.get("AttachedPolicies", [])),
    }


async def write_role(
    ctx: Session,
    name: str,
    desired: dict[str, Any],
    current: dict[str, Any] | None,
    tags: dict[str, str] | None,
) -> None:
    """Make the role as declared: created when missing, inline policy, managed policies."""
    if current is None or current.get("policy") is None:
        await ctx.call_or_none(
            frozenset({"EntityAlreadyExists"}),
            "iam",
            "create_role",
            RoleName=name,
            Path=ROLE_PATH,
            AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
            Description="awsd: execution role of a Lambda function",
            Tags=tag_list(tags or {}),
        )
    if current is None or not equal(current.get("policy"), desired["policy"]):
        await ctx.call(
            "iam",
            "put_role_policy",
            RoleName=name,
            PolicyName=INLINE_POLICY,
            PolicyDocument=json.dumps(desired["policy"]),
        )
    have = set((current or {}).get("managed_policies") or [])
    want = set(desired["managed_policies"])
    for arn in sorted(want - have):
        await ctx.call("iam", "attach_role_policy", RoleName=name, PolicyArn=arn)
    for arn in sorted(have - want):
        await ctx.call("iam", "detach_role_policy", RoleName=name, PolicyArn=arn)


async def delete_role(ctx: Session, name: str) -> None:
    """Delete the role awsd made: its inline policy and attachments first (IAM requires it)."""
    attached = await ctx.call_or_none(
        ROLE_MISSING, "iam", "list_attached_role_policies", RoleName=name
    )
    if attached is None:
        return
    for policy in attached.get("AttachedPolicies", []):
        await ctx.call("iam", "detach_role_policy", RoleName=name, PolicyArn=policy["PolicyArn"])
    await ctx.call_or_none(
        ROLE_MISSING, "iam", "delete_role_policy", RoleName=name, PolicyName=INLINE_POLICY
    )
    await ctx.call_or_none(ROLE_MISSING, "iam", "delete_role", RoleName=name)


# --- event source mappings ------------------------------------------------------------------


def _source_state(mapping: dict[str, Any]) -> dict[str, Any]:
    responses = mapping.get("FunctionResponseTypes") or []
    return {
        "batch_size": mapping.get("BatchSize"),
        "batching_window": mapping.get("MaximumBatchingWindowInSeconds") or 0,
        "enabled": mapping.get("State") not in ("Disabled", "Disabling"),
        "max_concurrency": (mapping.get("ScalingConfig") or {}).get("MaximumConcurrency"),
        "report_batch_item_failures": "ReportBatchItemFailures" in responses,
    }


async def read_sources(ctx: Session, function: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(source ARN -> settings, source ARN -> mapping UUID) of the function's mappings."""
    state: dict[str, Any] = {}
    uuids: dict[str, str] = {}
    params: dict[str, Any] = {"FunctionName": function}
    while True:
        page = await ctx.call("lambda", "list_event_source_mappings", **params)
        for mapping in page.get("EventSourceMappings", []):
            source = mapping.get("EventSourceArn", "")
            if source in state or mapping.get("State") == "Deleting":
                continue
            state[source] = _source_state(mapping)
            uuids[source] = mapping["UUID"]
        if not page.get("NextMarker"):
            return state, uuids
        params["Marker"] = page["NextMarker"]


def _source_params(want: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "BatchSize": want["batch_size"],
        "MaximumBatchingWindowInSeconds": want["batching_window"],
        "Enabled": want["enabled"],
        "FunctionResponseTypes": ["ReportBatchItemFailures"]
        if want["report_batch_item_failures"]
        else [],
    }
    if want.get("max_concurrency") is not None:
        params["ScalingConfig"] = {"MaximumConcurrency": want["max_concurrency"]}
    return params


async def write_sources(
    ctx: Session, res: Declared, observed: Observed, desired: dict[str, Any]
) -> None:
    have = observed.state.get("sources") or {}
    uuids: dict[str, str] = observed.handle.get("mappings") or {}
    for source, want in desired["sources"].items():
        path = join("sources", source)
        if is_ignored(path, res.spec.ignore):
            continue
        if source not in have:
            await ctx.call(
                "lambda",
                "create_event_source_mapping",
                FunctionName=res.physical,
                EventSourceArn=source,
                **_source_params(want),
            )
        elif not equal(dict(want), have[source]):
            await ctx.call(
                "lambda", "update_event_source_mapping", UUID=uuids[source], **_source_params(want)
            )


# --- permissions (the function's resource policy) -------------------------------------------


async def read_permissions(ctx: Session, function: str) -> dict[str, Any]:
    """Statement id -> `{"principal", "source_arn"}` of the function's resource policy."""
    got = await ctx.call_or_none(LAMBDA_MISSING, "lambda", "get_policy", FunctionName=function)
    if got is None or not got.get("Policy"):
        return {}
    out: dict[str, Any] = {}
    for statement in _document(got["Policy"]).get("Statement", []):
        principal = statement.get("Principal", {})
        condition = statement.get("Condition", {}).get("ArnLike", {})
        out[statement.get("Sid", "")] = {
            "principal": principal.get("Service") if isinstance(principal, dict) else principal,
            "source_arn": condition.get("AWS:SourceArn"),
        }
    return out


async def write_permissions(
    ctx: Session, res: Declared, observed: Observed, desired: dict[str, Any]
) -> None:
    have = observed.state.get("permissions") or {}
    for sid, want in desired["permissions"].items():
        if is_ignored(join("permissions", sid), res.spec.ignore):
            continue
        if sid in have and equal(dict(want), have[sid]):
            continue
        if sid in have:
            await ctx.call_or_none(
                LAMBDA_MISSING,
                "lambda",
                "remove_permission",
                FunctionName=res.physical,
                StatementId=sid,
            )
        await ctx.call(
            "lambda",
            "add_permission",
            FunctionName=res.physical,
            StatementId=sid,
            Action="lambda:InvokeFunction",
            Principal=want["principal"],
            SourceArn=want["source_arn"],
        )
