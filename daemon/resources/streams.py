"""Kinesis data streams: capacity mode, shard count, retention, encryption, tags.

Kinesis takes one change at a time: a stream that is CREATING or UPDATING refuses the next call
(ResourceInUseException), so every change waits for ACTIVE first and after. The shard count is
compared only when the file writes it, so a reshard made on purpose is not undone.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from daemon.base.fields import KmsKeyRef
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


class StreamConfig(ResourceBase):
    """A Kinesis data stream."""

    mode: Literal["provisioned", "on-demand"] = "provisioned"
    """Capacity mode."""

    shards: int = Field(default=1, ge=1, le=10000)
    """Open shards in provisioned mode. Compared only when written, so a reshard by an
    operator is left alone unless the file says how many there should be."""

    retention_hours: int | None = Field(default=None, ge=24, le=8760)
    """Hours records are kept (24 to 8760; AWS default 24)."""

    encryption: Literal["kms", "none"] | None = None
    """Server-side encryption with KMS, or none."""

    kms_key_id: KmsKeyRef = "alias/aws/kinesis"
    """KMS key for `encryption = "kms"`."""

    @model_validator(mode="after")
    def _consistent(self) -> StreamConfig:
        if self.mode == "on-demand" and "shards" in self.model_fields_set:
            raise ValueError("shards applies to provisioned streams only")
        return self


MISSING = frozenset({"ResourceNotFoundException"})
ACTIVE_BUDGET = 300.0  # resharding a large stream takes minutes


class StreamKind(Kind[StreamConfig]):
    name = "streams"
    singular = "stream"
    name_rule = NameRule(re.compile(r"^[A-Za-z0-9_.-]{1,128}$"), "1-128 of A-Z a-z 0-9 _ . -")
    service = "kinesis"
    tag_read_actions = ("kinesis:ListTagsForStream",)
    read_actions = ("kinesis:DescribeStreamSummary", "kinesis:ListTagsForStream")
    write_actions = (
        "kinesis:CreateStream",
        "kinesis:AddTagsToStream",
        "kinesis:UpdateShardCount",
        "kinesis:UpdateStreamMode",
        "kinesis:IncreaseStreamRetentionPeriod",
        "kinesis:DecreaseStreamRetentionPeriod",
        "kinesis:StartStreamEncryption",
        "kinesis:StopStreamEncryption",
    )
    delete_actions = ("kinesis:DeleteStream",)
    list_actions = ("kinesis:ListStreams",)

    def arn(self, physical: str, ctx: Place) -> str:
        return f"arn:{ctx.partition}:kinesis:{ctx.region}:{ctx.account}:stream/{physical}"

    def desired(self, res: Declared, ctx: Session) -> dict[str, Any]:
        spec = res.spec
        assert isinstance(spec, StreamConfig)
        out: dict[str, Any] = {"mode": spec.mode}
        if spec.mode == "provisioned":
            out["shards"] = spec.shards
        if spec.retention_hours is not None:
            out["retention_hours"] = spec.retention_hours
        if spec.encryption is not None:
            out["encryption"] = spec.encryption
            if spec.encryption == "kms":
                out["kms_key_id"] = spec.kms_key_id
        out["tags"] = Entries({**spec.tags, **ownership_tags(ctx.env)})
        return out

    def compared(self, res: Declared) -> set[str]:
        fields = super().compared(res)
        if getattr(res.spec, "encryption", None) == "kms":
            fields.add("kms_key_id")
        return fields

    async def _summary(self, ctx: Session, name: str) -> dict[str, Any] | None:
        got = await ctx.call_or_none(MISSING, "kinesis", "describe_stream_summary", StreamName=name)
        return None if got is None else dict(got["StreamDescriptionSummary"])

    async def read(self, ctx: Session, res: Declared) -> Observed | None:
        summary = await self._summary(ctx, res.physical)
        if summary is None or summary.get("StreamStatus") == "DELETING":
            return None
        mode = summary.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED")
        state: dict[str, Any] = {
            "mode": "on-demand" if mode == "ON_DEMAND" else "provisioned",
            "shards": summary.get("OpenShardCount"),
            "retention_hours": summary.get("RetentionPeriodHours"),
            "encryption": "kms" if summary.get("EncryptionType") == "KMS" else "none",
            "kms_key_id": summary.get("KeyId"),
        }
        tags = await ctx.call("kinesis", "list_tags_for_stream", StreamName=res.physical)
        state["tags"] = {t["Key"]: t["Value"] for t in tags.get("Tags", [])}
        return Observed(state, {"status": summary.get("StreamStatus")})

    async def _wait_active(self, ctx: Session, name: str) -> None:
        async def active() -> bool:
            summary = await self._summary(ctx, name)
            return summary is not None and summary.get("StreamStatus") == "ACTIVE"

        await ctx.poll(active, what=f"stream {name} becoming ACTIVE", budget=ACTIVE_BUDGET)

    async def create(self, ctx: Session, res: Declared, desired: dict[str, Any]) -> None:
        params: dict[str, Any] = {"StreamName": res.physical}
        if desired["mode"] == "on-demand":
            params["StreamModeDetails"] = {"StreamMode": "ON_DEMAND"}
        else:
            params["ShardCount"] = desired["shards"]
        # Already there: the applier checks whose it is before adopting it (`apply.py`).
        await ctx.call_or_none(
            frozenset({"ResourceInUseException"}), "kinesis", "create_stream", **params
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
        if "mode" in changed:
            mode = "ON_DEMAND" if desired["mode"] == "on-demand" else "PROVISIONED"
            await ctx.call(
                "kinesis",
                "update_stream_mode",
                StreamARN=res.arn,
                StreamModeDetails={"StreamMode": mode},
            )
            await self._wait_active(ctx, name)
        if "shards" in changed and desired["mode"] == "provisioned":
            await ctx.call(
                "kinesis",
                "update_shard_count",
                StreamName=name,
                TargetShardCount=desired["shards"],
                ScalingType="UNIFORM_SCALING",
            )
            await self._wait_active(ctx, name)
        if "retention_hours" in changed:
            have = observed.state.get("retention_hours") or 24
            operation = (
                "increase_stream_retention_period"
                if desired["retention_hours"] > have
                else "decrease_stream_retention_period"
            )
            await ctx.call(
                "kinesis",
                operation,
                StreamName=name,
                RetentionPeriodHours=desired["retention_hours"],
            )
            await self._wait_active(ctx, name)
        if "encryption" in changed or "kms_key_id" in changed:
            await self._set_encryption(ctx, name, observed, desired)
        tags = tags_to_set(res, observed, desired)
        if tags:
            await ctx.call("kinesis", "add_tags_to_stream", StreamName=name, Tags=tags)

    async def _set_encryption(
        self, ctx: Session, name: str, observed: Observed, desired: dict[str, Any]
    ) -> None:
        if desired.get("encryption") == "kms":
            await ctx.call(
                "kinesis",
                "start_stream_encryption",
                StreamName=name,
                EncryptionType="KMS",
                KeyId=desired["kms_key_id"],
            )
        elif observed.state.get("encryption") == "kms":
            await ctx.call(
                "kinesis",
                "stop_stream_encryption",
                StreamName=name,
                EncryptionType="KMS",
                KeyId=observed.state.get("kms_key_id") or "",
            )
        await self._wait_active(ctx, name)

    async def delete(self, ctx: Session, found: Found) -> None:
        await ctx.call_or_none(MISSING, "kinesis", "delete_stream", StreamName=found.physical)

    async def discover(self, ctx: Session) -> list[Found]:
        owned: list[Found] = []
        params: dict[str, Any] = {}
        while True:
            page = await ctx.call("kinesis", "list_streams", **params)
            names = page.get("StreamNames", [])
            for name in names:
                tags = await ctx.call_or_none(
                    MISSING | ACCESS_DENIED, "kinesis", "list_tags_for_stream", StreamName=name
                )
                found_tags = {t["Key"]: t["Value"] for t in (tags or {}).get("Tags", [])}
                if owned_by(found_tags, ctx.env):
                    owned.append(Found("streams", name, self.arn(name, ctx), found_tags))
            if not page.get("HasMoreStreams") or not names:
                return owned
            if page.get("NextToken"):
                params = {"NextToken": page["NextToken"]}
            else:
                params = {"ExclusiveStartStreamName": names[-1]}


STREAMS = StreamKind(StreamConfig)
