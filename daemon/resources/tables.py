"""DynamoDB tables: key schema, capacity mode, TTL, point-in-time recovery, deletion protection.

The key schema is the table's identity: a different partition or sort key means replacing the
table (and losing its items), which the worker only does with `enforce_replace = true` and
`awsd apply` shows as `-/+` first. Tables take time to become ACTIVE; changes wait for it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

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
    ResourceFailed,
    Session,
    owned_by,
    ownership_tags,
    tag_dict,
    tag_list,
    tags_to_set,
)


class TableConfig(ResourceBase):
    """A DynamoDB table (the Kinesis lease store, the reconciler's lease)."""

    partition_key: str = Field(min_length=1, max_length=255)
    """Partition (hash) key attribute. Changing it replaces the table."""

    partition_key_type: Literal["S", "N", "B"] = "S"
    """Its type: string, number or binary."""

    sort_key: str | None = Field(default=None, min_length=1, max_length=255)
    """Sort (range) key attribute, if any. Changing it replaces the table."""

    sort_key_type: Literal["S", "N", "B"] = "S"
    """Its type."""

    billing: Literal["on-demand", "provisioned"] = "on-demand"
    """Capacity mode."""

    read_capacity: int | None = Field(default=None, ge=1)
    """Provisioned read capacity units (`billing = "provisioned"`)."""

    write_capacity: int | None = Field(default=None, ge=1)
    """Provisioned write capacity units (`billing = "provisioned"`)."""

    ttl_attribute: str | None = None
    """Attribute holding an expiry time (epoch seconds) for DynamoDB's TTL."""

    point_in_time_recovery: bool | None = None
    """Continuous backups with point-in-time recovery."""

    deletion_protection: bool | None = None
    """Refuse DeleteTable while on."""

    @model_validator(mode="after")
    def _capacity(self) -> TableConfig:
        provisioned = self.billing == "provisioned"
        has_capacity = self.read_capacity is not None and self.write_capacity is not None
        if provisioned and not has_capacity:
            raise ValueError('billing = "provisioned" needs read_capacity and write_capacity')
        if not provisioned and (self.read_capacity or self.write_capacity):
            raise ValueError('read_capacity and write_capacity need billing = "provisioned"')
        return self


MISSING = frozenset({"ResourceNotFoundException"})
ACTIVE_BUDGET = 300.0
_KEY_FIELDS = frozenset({"partition_key", "partition_key_type", "sort_key", "sort_key_type"})


class TableKind(Kind[TableConfig]):
    name = "tables"
    singular = "table"
    name_rule = NameRule(re.compile(r"^[A-Za-z0-9_.-]{3,255}$"), "3-255 of A-Z a-z 0-9 _ . -")
    service = "dynamodb"
    replace_paths = _KEY_FIELDS
    always_compared = frozenset({"tags", "partition_key", "sort_key"})
    tag_read_actions = ("dynamodb:ListTagsOfResource",)
    read_actions = (
        "dynamodb:DescribeTable",
        "dynamodb:DescribeTimeToLive",
        "dynamodb:DescribeContinuousBackups",
        "dynamodb:ListTagsOfResource",
    )
    write_actions = (
        "dynamodb:CreateTable",
        "dynamodb:UpdateTable",
        "dynamodb:UpdateTimeToLive",
        "dynamodb:UpdateContinuousBackups",
        "dynamodb:TagResource",
    )
    delete_actions = ("dynamodb:DeleteTable",)
    list_actions = ("dynamodb:ListTables",)

    def arn(self, physical: str, ctx: Place) -> str:
        return f"arn:{ctx.partition}:dynamodb:{ctx.region}:{ctx.account}:table/{physical}"

    def desired(self, res: Declared, ctx: Session) -> dict[str, Any]:
        spec = res.spec
        assert isinstance(spec, TableConfig)
        out: dict[str, Any] = {
            "partition_key": spec.partition_key,
            "partition_key_type": spec.partition_key_type,
            "sort_key": spec.sort_key,
        }
        if spec.sort_key is not None:
            out["sort_key_type"] = spec.sort_key_type
        out["billing"] = spec.billing
        if spec.billing == "provisioned":
            out["read_capacity"] = spec.read_capacity
            out["write_capacity"] = spec.write_capacity
        for field in ("ttl_attribute", "point_in_time_recovery", "deletion_protection"):
            if getattr(spec, field) is not None:
                out[field] = getattr(spec, field)
        out["tags"] = Entries({**spec.tags, **ownership_tags(ctx.env)})
        return out

    def compared(self, res: Declared) -> set[str]:
        fields = super().compared(res)
        if "billing" in fields:
            fields |= {"read_capacity", "write_capacity"}
        return fields

    async def _describe(self, ctx: Session, name: str) -> dict[str, Any] | None:
        got = await ctx.call_or_none(MISSING, "dynamodb", "describe_table", TableName=name)
        return None if got is None else dict(got["Table"])

    async def read(self, ctx: Session, res: Declared) -> Observed | None:
        table = await self._describe(ctx, res.physical)
        if table is None or table.get("TableStatus") == "DELETING":
            return None
        state = _key_state(table)
        mode = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
        state["billing"] = "on-demand" if mode == "PAY_PER_REQUEST" else "provisioned"
        if state["billing"] == "provisioned":
            throughput = table.get("ProvisionedThroughput", {})
            state["read_capacity"] = throughput.get("ReadCapacityUnits")
            state["write_capacity"] = throughput.get("WriteCapacityUnits")
        state["deletion_protection"] = bool(table.get("DeletionProtectionEnabled", False))
        compared = self.compared(res)
        if "ttl_attribute" in compared:
            ttl = await ctx.call("dynamodb", "describe_time_to_live", TableName=res.physical)
            described = ttl.get("TimeToLiveDescription", {})
            enabled = described.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
            state["ttl_attribute"] = described.get("AttributeName") if enabled else None
        if "point_in_time_recovery" in compared:
            backups = await ctx.call(
                "dynamodb", "describe_continuous_backups", TableName=res.physical
            )
            pitr = backups["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
            state["point_in_time_recovery"] = pitr.get("PointInTimeRecoveryStatus") == "ENABLED"
        tags = await ctx.call("dynamodb", "list_tags_of_resource", ResourceArn=table["TableArn"])
        state["tags"] = tag_dict(tags.get("Tags"))
        return Observed(state, {"status": table.get("TableStatus")})

    async def _wait_active(self, ctx: Session, name: str) -> None:
        async def active() -> bool:
            table = await self._describe(ctx, name)
            return table is not None and table.get("TableStatus") == "ACTIVE"

        await ctx.poll(active, what=f"table {name} becoming ACTIVE", budget=ACTIVE_BUDGET)

    async def create(self, ctx: Session, res: Declared, desired: dict[str, Any]) -> None:
        attributes = [
            {
                "AttributeName": desired["partition_key"],
                "AttributeType": desired["partition_key_type"],
            }
        ]
        schema = [{"AttributeName": desired["partition_key"], "KeyType": "HASH"}]
        if desired["sort_key"]:
            attributes.append(
                {"AttributeName": desired["sort_key"], "AttributeType": desired["sort_key_type"]}
            )
            schema.append({"AttributeName": desired["sort_key"], "KeyType": "RANGE"})
        params: dict[str, Any] = {
            "TableName": res.physical,
            "AttributeDefinitions": attributes,
            "KeySchema": schema,
            "Tags": tag_list(dict(desired["tags"])),
        }
        params.update(_billing(desired))
        if desired.get("deletion_protection"):
            params["DeletionProtectionEnabled"] = True
        # Already there: the applier checks whose it is before adopting it (`apply.py`).
        await ctx.call_or_none(
            frozenset({"ResourceInUseException"}), "dynamodb", "create_table", **params
        )
        await self._wait_active(ctx, res.physical)

    async def update(
        self,
        ctx: Session,
        res: Declared,
        observed: Observed,
        desired: dict[str, Any],
        changed: set[str],
    ) -> None:
        name = res.physical
        await self._wait_active(ctx, name)
        if changed & {"billing", "read_capacity", "write_capacity"}:
            await ctx.call("dynamodb", "update_table", TableName=name, **_billing(desired))
            await self._wait_active(ctx, name)
        if "deletion_protection" in changed:
            await ctx.call(
                "dynamodb",
                "update_table",
                TableName=name,
                DeletionProtectionEnabled=bool(desired["deletion_protection"]),
            )
            await self._wait_active(ctx, name)
        if "ttl_attribute" in changed:
            await self._set_ttl(
                ctx, name, observed.state.get("ttl_attribute"), desired["ttl_attribute"]
            )
        if "point_in_time_recovery" in changed:
            await ctx.call(
                "dynamodb",
                "update_continuous_backups",
                TableName=name,
                PointInTimeRecoverySpecification={
                    "PointInTimeRecoveryEnabled": bool(desired["point_in_time_recovery"])
                },
            )
        tags = tags_to_set(res, observed, desired)
        if tags:
            await ctx.call("dynamodb", "tag_resource", ResourceArn=res.arn, Tags=tag_list(tags))

    async def _set_ttl(self, ctx: Session, name: str, have: str | None, want: str | None) -> None:
        # One attribute at a time: switching attributes means disabling the old one first.
        if have:
            await ctx.call(
                "dynamodb",
                "update_time_to_live",
                TableName=name,
                TimeToLiveSpecification={"Enabled": False, "AttributeName": have},
            )
        if want:
            await ctx.call(
                "dynamodb",
                "update_time_to_live",
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": want},
            )

    async def delete(self, ctx: Session, found: Found) -> None:
        table = await self._describe(ctx, found.physical)
        if table is None:
            return
        if table.get("DeletionProtectionEnabled"):
            raise ResourceFailed(
                f"table {found.physical!r} has deletion protection on; turn it off first"
            )
        await ctx.call_or_none(MISSING, "dynamodb", "delete_table", TableName=found.physical)

        async def gone() -> bool:
            return await self._describe(ctx, found.physical) is None

        await ctx.poll(gone, what=f"table {found.physical} being deleted", budget=ACTIVE_BUDGET)

    async def discover(self, ctx: Session) -> list[Found]:
        owned: list[Found] = []
        params: dict[str, Any] = {}
        while True:
            page = await ctx.call("dynamodb", "list_tables", **params)
            for name in page.get("TableNames", []):
                arn = self.arn(name, ctx)
                tags = await ctx.call_or_none(
                    MISSING | ACCESS_DENIED, "dynamodb", "list_tags_of_resource", ResourceArn=arn
                )
                found_tags = tag_dict((tags or {}).get("Tags"))
                if owned_by(found_tags, ctx.env):
                    owned.append(Found("tables", name, arn, found_tags))
            if not page.get("LastEvaluatedTableName"):
                return owned
            params["ExclusiveStartTableName"] = page["LastEvaluatedTableName"]


def _key_state(table: dict[str, Any]) -> dict[str, Any]:
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    state: dict[str, Any] = {"sort_key": None}
    for key in table.get("KeySchema", []):
        name = key["AttributeName"]
        if key["KeyType"] == "HASH":
            state["partition_key"], state["partition_key_type"] = name, types.get(name)
        else:
            state["sort_key"], state["sort_key_type"] = name, types.get(name)
    return state


def _billing(desired: dict[str, Any]) -> dict[str, Any]:
    if desired["billing"] == "on-demand":
        return {"BillingMode": "PAY_PER_REQUEST"}
    return {
        "BillingMode": "PROVISIONED",
        "ProvisionedThroughput": {
            "ReadCapacityUnits": desired["read_capacity"],
            "WriteCapacityUnits": desired["write_capacity"],
        },
    }


TABLES = TableKind(TableConfig)
