"""CloudWatch Logs log groups: retention and tags.

`retention_days = 0` means "keep forever" (no retention policy), which is also what AWS reports
for a group without one.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator

from daemon.resources.diff import Entries
from daemon.resources.kind import (
    ACCESS_DENIED,
    Declared,
    Found,
    Kind,
    NameRule,
    Observed,
    Place,
    ResourceBase,
    Session,
    owned_by,
    ownership_tags,
    tags_to_set,
)

RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
)  # fmt: skip


class LogGroupConfig(ResourceBase):
    """A CloudWatch Logs log group."""

    retention_days: int | None = None
    """Days events are kept (one of CloudWatch's values: 1, 3, 5, 7, 14, 30, 60, 90, ...,
    3653); `0` keeps them forever. Unset: not compared."""

    @field_validator("retention_days")
    @classmethod
    def _known_retention(cls, value: int | None) -> int | None:
        if value is not None and value != 0 and value not in RETENTION_DAYS:
            raise ValueError(
                f"CloudWatch Logs does not offer {value} days; one of "
                f"{', '.join(map(str, RETENTION_DAYS))} (or 0 for forever)"
            )
        return value


MISSING = frozenset({"ResourceNotFoundException"})


class LogGroupKind(Kind[LogGroupConfig]):
    name = "log_groups"
    singular = "log_group"
    name_rule = NameRule(re.compile(r"^[A-Za-z0-9_./#-]{1,512}$"), "1-512 of A-Z a-z 0-9 _ - / . #")
    service = "logs"
    tag_read_actions = ("logs:ListTagsForResource",)
    read_actions = ("logs:ListTagsForResource",)
    unscoped_read_actions = ("logs:DescribeLogGroups",)
    write_actions = (
        "logs:CreateLogGroup",
        "logs:PutRetentionPolicy",
        "logs:DeleteRetentionPolicy",
        "logs:TagResource",
    )
    delete_actions = ("logs:DeleteLogGroup",)
    list_actions = ("logs:DescribeLogGroups",)

    def arn(self, physical: str, ctx: Place) -> str:
        return f"arn:{ctx.partition}:logs:{ctx.region}:{ctx.account}:log-group:{physical}"

    def arn_patterns(self, physical: str, ctx: Place) -> list[str]:
        # Some Logs actions authorise on the group's ARN with the `:*` of its streams.
        arn = self.arn(physical, ctx)
        return [arn, f"{arn}:*"]

    def desired(self, res: Declared, ctx: Session) -> dict[str, Any]:
        spec = res.spec
        assert isinstance(spec, LogGroupConfig)
        out: dict[str, Any] = {}
        if spec.retention_days is not None:
            out["retention_days"] = spec.retention_days
        out["tags"] = Entries({**spec.tags, **ownership_tags(ctx.env)})
        return out

    async def _describe(self, ctx: Session, name: str) -> dict[str, Any] | None:
        params: dict[str, Any] = {"logGroupNamePrefix": name}
        while True:
            page = await ctx.call("logs", "describe_log_groups", **params)
            for group in page.get("logGroups", []):
                if group["logGroupName"] == name:
                    return dict(group)
            if not page.get("nextToken"):
                return None
            params["nextToken"] = page["nextToken"]

    async def read(self, ctx: Session, res: Declared) -> Observed | None:
        group = await self._describe(ctx, res.physical)
        if group is None:
            return None
        tags = await ctx.call_or_none(
            MISSING, "logs", "list_tags_for_resource", resourceArn=res.arn
        )
        state = {
            "retention_days": group.get("retentionInDays", 0),
            "tags": dict((tags or {}).get("tags", {})),
        }
        return Observed(state)

    async def create(self, ctx: Session, res: Declared, desired: dict[str, Any]) -> None:
        # Already there: the applier checks whose it is before adopting it (`apply.py`).
        await ctx.call_or_none(
            frozenset({"ResourceAlreadyExistsException"}),
            "logs",
            "create_log_group",
            logGroupName=res.physical,
            tags=dict(desired["tags"]),
        )

    async def update(
        self,
        ctx: Session,
        res: Declared,
        observed: Observed,
        desired: dict[str, Any],
        changed: set[str],
    ) -> None:
        if "retention_days" in changed:
            days = desired["retention_days"]
            if days:
                await ctx.call(
                    "logs", "put_retention_policy", logGroupName=res.physical, retentionInDays=days
                )
            else:
                await ctx.call("logs", "delete_retention_policy", logGroupName=res.physical)
        tags = tags_to_set(res, observed, desired)
        if tags:
            await ctx.call("logs", "tag_resource", resourceArn=res.arn, tags=tags)

    async def delete(self, ctx: Session, found: Found) -> None:
        await ctx.call_or_none(MISSING, "logs", "delete_log_group", logGroupName=found.physical)

    async def discover(self, ctx: Session) -> list[Found]:
        owned: list[Found] = []
        params: dict[str, Any] = {}
        while True:
            page = await ctx.call("logs", "describe_log_groups", **params)
            for group in page.get("logGroups", []):
                name = group["logGroupName"]
                arn = self.arn(name, ctx)
                tags = await ctx.call_or_none(
                    MISSING | ACCESS_DENIED, "logs", "list_tags_for_resource", resourceArn=arn
                )
                found_tags = dict((tags or {}).get("tags", {}))
                if owned_by(found_tags, ctx.env):
                    owned.append(Found("log_groups", name, arn, found_tags))
            if not page.get("nextToken"):
                return owned
            params["nextToken"] = page["nextToken"]


LOG_GROUPS = LogGroupKind(LogGroupConfig)
