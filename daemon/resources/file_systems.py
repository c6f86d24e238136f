"""EFS file systems: performance and throughput modes, encryption, lifecycle, backup policy,
tags, and their parts: mount targets, the security group that lets clients reach them, and
access points (`file_system_parts.py`).

A file system has no name in AWS: the physical name is its creation token (EFS's own
idempotency key: a second create with it returns the first file system) and its `Name` tag. Its
id, and so its ARN and DNS name (`<id>.efs.<region>.amazonaws.com`), are assigned by AWS: the
plan shows them as outputs (and how to mount it: docs/file-systems.md).

Performance mode and encryption are fixed at creation: a difference there means replacing the
file system, with its data, which the worker never does unless `enforce_replace`, and `awsd
apply` shows as `-/+` first. Throughput mode, lifecycle and the backup policy change in place.

Subnets are given as subnet ids or as `default.<availability zone>` (the default VPC's default
subnet in that zone, looked up when planning); security groups as ids. `resolve_subnet` and
`resolve_group` in `file_system_parts.py` are where declared VPCs' subnets (`"<vpc>.<subnet>"`)
and declared security groups will be resolved once they are resource kinds.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from daemon.base.fields import Section
from daemon.resources.diff import Entries, Required
from daemon.resources.file_system_parts import (
    GROUP_REF,
    SUBNET_REF,
    delete_parts,
    nfs_group_name,
    read_access_points,
    read_mount_targets,
    read_nfs_group,
    write_access_points,
    write_mount_targets,
    write_nfs_group,
)
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
    tag_dict,
    tag_list,
    tags_to_set,
)

IA_DAYS = (1, 7, 14, 30, 60, 90, 180, 270, 365)
MISSING = frozenset({"FileSystemNotFound"})
NO_POLICY = frozenset({"PolicyNotFound"})
_CIDR = re.compile(r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")
_DAYS_WORDS = {1: "AFTER_1_DAY"} | {d: f"AFTER_{d}_DAYS" for d in IA_DAYS if d > 1}
_WORDS_DAYS = {v: k for k, v in _DAYS_WORDS.items()}


class MountTargetConfig(Section):
    """A mount target: the file system's NFS endpoint in one subnet (one per zone)."""

    subnet: str
    """A subnet id (`subnet-0abc...`) or `default.<zone>` (the default VPC's subnet in that
    availability zone, `default.us-east-1a`)."""

    security_groups: list[str] = Field(default_factory=list, max_length=5)
    """Security group ids of the mount target (besides the NFS group of `nfs_from`); none at
    all: the VPC's default group."""

    ip_address: str | None = None
    """A fixed IPv4 address in the subnet; unset: one AWS picks."""

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        if not SUBNET_REF.match(value):
            raise ValueError(
                f"{value!r}: a subnet id (subnet-...) or default.<availability zone>; subnets of "
                "declared VPCs (<vpc>.<subnet>) come with the network resource kinds"
            )
        return value

    @field_validator("security_groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        for group in value:
            if not GROUP_REF.match(group):
                raise ValueError(f"{group!r} is not a security group id (sg-...)")
        return value


class AccessPointConfig(Section):
    """An access point: a directory of the file system entered as a fixed POSIX user."""

    path: str = Field(pattern=r"^/", max_length=100)
    """The directory clients see as the root (`/data`); created on first use."""

    uid: int = Field(ge=0, le=4294967295)
    """User id every access through it runs as."""

    gid: int = Field(ge=0, le=4294967295)
    """Group id every access through it runs as."""

    secondary_gids: list[int] = Field(default_factory=list, max_length=16)
    """More group ids."""

    owner_uid: int | None = Field(default=None, ge=0, le=4294967295)
    """Owner of the directory when EFS creates it; unset: `uid`."""

    owner_gid: int | None = Field(default=None, ge=0, le=4294967295)
    """Group of the directory when EFS creates it; unset: `gid`."""

    permissions: str = Field(default="0755", pattern=r"^0?[0-7]{3,4}$")
    """Mode of the directory when EFS creates it (`0750`)."""


class FileSystemConfig(ResourceBase):
    """An EFS file system, its mount targets and access points."""

    performance_mode: Literal["generalPurpose", "maxIO"] = "generalPurpose"
    """Fixed at creation (a change replaces the file system and its data)."""

    throughput_mode: Literal["elastic", "bursting", "provisioned"] = "elastic"
    """How throughput is paid for; `provisioned` needs `provisioned_mibps`."""

    provisioned_mibps: float | None = Field(default=None, ge=1, le=10240)
    """MiB/s with `throughput_mode = "provisioned"`."""

    encrypted: bool = True
    """Encryption at rest; fixed at creation."""

    kms_key_id: str | None = None
    """KMS key (id, ARN or alias) for encryption; unset: the AWS managed key. Fixed at
    creation."""

    transition_to_ia_days: Literal[1, 7, 14, 30, 60, 90, 180, 270, 365] | None = None
    """Move files not read for this many days to Infrequent Access (cheaper storage)."""

    transition_to_primary: bool | None = None
    """Move a file in Infrequent Access back on its first read."""

    backup: bool | None = None
    """Daily AWS Backup of the file system (the backup policy)."""

    mount_targets: list[MountTargetConfig] = Field(default_factory=list)
    """Mount targets, one per availability zone. Mount targets not declared are left alone."""

    nfs_from: list[str] = Field(default_factory=list)
    """Who may mount it: security group ids (`sg-...`, the instances' groups) or IPv4 CIDR
    blocks. awsd makes a security group `<name>-nfs` allowing NFS (TCP 2049) from these and
    puts it on every mount target."""

    access_points: dict[str, AccessPointConfig] = Field(default_factory=dict)
    """Access points by name (their `Name` tag). Access points not declared are left alone; one
    whose settings differ is replaced (EFS cannot change them)."""

    @field_validator("nfs_from")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        for source in value:
            if not (GROUP_REF.match(source) or _CIDR.match(source)):
                raise ValueError(
                    f"{source!r} is neither a security group id (sg-...) nor an IPv4 CIDR block"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FileSystemConfig:
        if (self.throughput_mode == "provisioned") != (self.provisioned_mibps is not None):
            raise ValueError('provisioned_mibps goes with throughput_mode = "provisioned"')
        if self.kms_key_id is not None and not self.encrypted:
            raise ValueError("kms_key_id needs encrypted = true")
        subnets = [t.subnet for t in self.mount_targets]
        dupes = sorted({s for s in subnets if subnets.count(s) > 1})
        if dupes:
            raise ValueError(f"duplicate mount target subnets: {', '.join(dupes)}")
        return self


def dns_name(file_system_id: str, region: str) -> str:
    """The name clients mount (it resolves to the mount target in their zone)."""
    return f"{file_system_id}.efs.{region}.amazonaws.com"


class FileSystemKind(Kind[FileSystemConfig]):
    name = "file_systems"
    singular = "file_system"
    name_rule = NameRule(
        re.compile(r"^[A-Za-z0-9_.-]{1,59}$"),
        "1-59 letters, digits, '.', '-' or '_' (the creation token; `<name>-nfs` names its "
        "security group)",
    )
    service = "efs"
    arn_service = "elasticfilesystem"
    assigns_ids = True
    outputs_after_create = ("id", "dns_name")
    replace_paths = frozenset({"performance_mode", "encrypted", "kms_key_id"})
    tag_read_actions = ("elasticfilesystem:ListTagsForResource",)
    read_actions = (
        "elasticfilesystem:DescribeFileSystems",
        "elasticfilesystem:DescribeMountTargets",
        "elasticfilesystem:DescribeMountTargetSecurityGroups",
        "elasticfilesystem:DescribeLifecycleConfiguration",
        "elasticfilesystem:DescribeBackupPolicy",
        "elasticfilesystem:DescribeAccessPoints",
        "elasticfilesystem:ListTagsForResource",
    )
    unscoped_read_actions = (
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeNetworkInterfaceAttribute",  # DescribeMountTargetSecurityGroups needs it
    )
    write_actions = (
        "elasticfilesystem:CreateFileSystem",
        "elasticfilesystem:UpdateFileSystem",
        "elasticfilesystem:TagResource",
        "elasticfilesystem:CreateMountTarget",
        "elasticfilesystem:ModifyMountTargetSecurityGroups",
        "elasticfilesystem:PutLifecycleConfiguration",
        "elasticfilesystem:PutBackupPolicy",
        "elasticfilesystem:CreateAccessPoint",
        "elasticfilesystem:DeleteAccessPoint",
    )
    unscoped_write_actions = (
        # CreateMountTarget makes a network interface with the caller's permissions.
        "ec2:DescribeNetworkInterfaces",
        "ec2:CreateNetworkInterface",
        "ec2:ModifyNetworkInterfaceAttribute",  # ModifyMountTargetSecurityGroups needs it
        "ec2:CreateSecurityGroup",
        "ec2:CreateTags",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupIngress",
    )
    delete_actions = (
        "elasticfilesystem:DeleteFileSystem",
        "elasticfilesystem:DeleteMountTarget",
        "elasticfilesystem:DeleteAccessPoint",
        "elasticfilesystem:DescribeMountTargets",
        "elasticfilesystem:DescribeAccessPoints",
        "ec2:DeleteSecurityGroup",
        "ec2:DescribeSecurityGroups",
        "ec2:DeleteNetworkInterface",
    )
    list_actions = ("elasticfilesystem:DescribeFileSystems",)

    def arn(self, physical: str, ctx: Place) -> str:
        # The id is assigned by AWS: until it is read, the account's file systems.
        return f"arn:{ctx.partition}:elasticfilesystem:{ctx.region}:{ctx.account}:file-system/*"

    def arn_patterns(self, physical: str, ctx: Place) -> list[str]:
        base = f"arn:{ctx.partition}:elasticfilesystem:{ctx.region}:{ctx.account}"
        return [f"{base}:file-system/*", f"{base}:access-point/*"]

    def desired(self, res: Declared, ctx: Session) -> dict[str, Any]:
        spec = res.spec
        assert isinstance(spec, FileSystemConfig)
        out: dict[str, Any] = {
            "performance_mode": spec.performance_mode,
            "throughput_mode": spec.throughput_mode,
            "encrypted": spec.encrypted,
        }
        if spec.provisioned_mibps is not None:
            out["provisioned_mibps"] = spec.provisioned_mibps
        for field in ("kms_key_id", "transition_to_ia_days", "transition_to_primary", "backup"):
            if getattr(spec, field) is not None:
                out[field] = getattr(spec, field)
        group = nfs_group_name(res.physical) if spec.nfs_from else None
        out["mount_targets"] = Entries(
            {
                target.subnet: Required(
                    {
                        "security_groups": sorted(
                            [*target.security_groups, *([group] if group else [])]
                        ),
                        **({"ip_address": target.ip_address} if target.ip_address else {}),
                    }
                )
                for target in spec.mount_targets
            }
        )
        out["nfs_from"] = sorted(spec.nfs_from)
        out["access_points"] = Entries(
            {name: Required(_access_point(ap)) for name, ap in spec.access_points.items()}
        )
        out["tags"] = Entries({**spec.tags, "Name": res.physical, **ownership_tags(ctx.env)})
        return out

    def compared(self, res: Declared) -> set[str]:
        fields = super().compared(res)
        if "throughput_mode" in fields and "provisioned_mibps" in res.spec.model_fields_set:
            fields.add("provisioned_mibps")
        return fields

    async def _describe(self, ctx: Session, token: str) -> dict[str, Any] | None:
        got = await ctx.call("efs", "describe_file_systems", CreationToken=token)
        systems = got.get("FileSystems", [])
        return dict(systems[0]) if systems else None

    async def read(self, ctx: Session, res: Declared) -> Observed | None:
        fs = await self._describe(ctx, res.physical)
        if fs is None:
            return None
        fs_id = fs["FileSystemId"]
        state: dict[str, Any] = {
            "performance_mode": fs.get("PerformanceMode"),
            "throughput_mode": fs.get("ThroughputMode"),
            "provisioned_mibps": fs.get("ProvisionedThroughputInMibps"),
            "encrypted": bool(fs.get("Encrypted")),
            "kms_key_id": fs.get("KmsKeyId"),
            "tags": tag_dict(fs.get("Tags")),
        }
        compared = self.compared(res)
        if compared & {"transition_to_ia_days", "transition_to_primary"}:
            got = await ctx.call("efs", "describe_lifecycle_configuration", FileSystemId=fs_id)
            state.update(_lifecycle_state(got.get("LifecyclePolicies", [])))
        if "backup" in compared:
            policy = await ctx.call_or_none(
                NO_POLICY, "efs", "describe_backup_policy", FileSystemId=fs_id
            )
            status = ((policy or {}).get("BackupPolicy") or {}).get("Status")
            state["backup"] = status in ("ENABLED", "ENABLING")
        spec = res.spec
        assert isinstance(spec, FileSystemConfig)
        group_id, state["nfs_from"] = await read_nfs_group(ctx, res.physical, spec)
        targets, target_handles = await read_mount_targets(ctx, fs_id, res.physical, spec, group_id)
        state["mount_targets"] = targets
        state["access_points"], points = await read_access_points(ctx, fs_id)
        region = fs.get("FileSystemArn", "").split(":")[3] or ctx.region
        return Observed(
            state,
            {"id": fs_id, "mount_targets": target_handles, "access_points": points},
            outputs={
                "id": fs_id,
                "dns_name": dns_name(fs_id, region),
                "mount_targets": str(fs.get("NumberOfMountTargets", len(target_handles))),
            },
            arn=fs.get("FileSystemArn"),
        )

    async def create(self, ctx: Session, res: Declared, desired: dict[str, Any]) -> None:
        params: dict[str, Any] = {
            "CreationToken": res.physical,
            "PerformanceMode": desired["performance_mode"],
            "ThroughputMode": desired["throughput_mode"],
            "Encrypted": desired["encrypted"],
            "Tags": tag_list(dict(desired["tags"])),
        }
        if "provisioned_mibps" in desired:
            params["ProvisionedThroughputInMibps"] = desired["provisioned_mibps"]
        if "kms_key_id" in desired:
            params["KmsKeyId"] = desired["kms_key_id"]
        if "backup" in desired:
            params["Backup"] = desired["backup"]
        # The creation token makes a repeated create return the same file system.
        await ctx.call_or_none(
            frozenset({"FileSystemAlreadyExists"}), "efs", "create_file_system", **params
        )

        async def available() -> bool:
            fs = await self._describe(ctx, res.physical)
            return fs is not None and fs.get("LifeCycleState") == "available"

        await ctx.poll(available, what=f"file system {res.physical} available", budget=120.0)
        # Lifecycle, mount targets, the NFS group and access points follow through `update`.

    async def update(
        self,
        ctx: Session,
        res: Declared,
        observed: Observed,
        desired: dict[str, Any],
        changed: set[str],
    ) -> None:
        spec = res.spec
        assert isinstance(spec, FileSystemConfig)
        fs_id = observed.handle["id"]
        if changed & {"throughput_mode", "provisioned_mibps"}:
            params: dict[str, Any] = {"ThroughputMode": desired["throughput_mode"]}
            if "provisioned_mibps" in desired:
                params["ProvisionedThroughputInMibps"] = desired["provisioned_mibps"]
            await ctx.call("efs", "update_file_system", FileSystemId=fs_id, **params)
        if changed & {"transition_to_ia_days", "transition_to_primary"}:
            await ctx.call(
                "efs",
                "put_lifecycle_configuration",
                FileSystemId=fs_id,
                LifecyclePolicies=_lifecycle_policies(desired),
            )
        if "backup" in changed:
            status = "ENABLED" if desired["backup"] else "DISABLED"
            await ctx.call(
                "efs", "put_backup_policy", FileSystemId=fs_id, BackupPolicy={"Status": status}
            )
        group_id = None
        if changed & {"nfs_from", "mount_targets"} and spec.nfs_from:
            group_id = await write_nfs_group(ctx, res, spec, dict(desired["tags"]))
        if "mount_targets" in changed:
            await write_mount_targets(ctx, res, observed, spec, group_id)
        if "access_points" in changed:
            await write_access_points(ctx, res, observed, desired)
        tags = tags_to_set(res, observed, desired)
        if tags:
            await ctx.call("efs", "tag_resource", ResourceId=fs_id, Tags=tag_list(tags))

    async def delete(self, ctx: Session, found: Found) -> None:
        fs_id = found.handle.get("id")
        if fs_id is None:
            fs = await self._describe(ctx, found.physical)
            if fs is None:
                return
            fs_id = fs["FileSystemId"]
        await delete_parts(ctx, fs_id, found.physical)
        await ctx.call_or_none(MISSING, "efs", "delete_file_system", FileSystemId=fs_id)

    async def discover(self, ctx: Session) -> list[Found]:
        owned: list[Found] = []
        params: dict[str, Any] = {}
        while True:
            page = await ctx.call("efs", "describe_file_systems", **params)
            for fs in page.get("FileSystems", []):
                tags = tag_dict(fs.get("Tags"))
                if not tags:
                    got = await ctx.call_or_none(
                        MISSING | ACCESS_DENIED,
                        "efs",
                        "list_tags_for_resource",
                        ResourceId=fs["FileSystemId"],
                    )
                    tags = tag_dict((got or {}).get("Tags"))
                if owned_by(tags, ctx.env):
                    owned.append(
                        Found(
                            "file_systems",
                            fs["CreationToken"],
                            fs["FileSystemArn"],
                            tags,
                            {"id": fs["FileSystemId"]},
                        )
                    )
            if not page.get("NextMarker"):
                return owned
            params["Marker"] = page["NextMarker"]


def _access_point(ap: AccessPointConfig) -> dict[str, Any]:
    return {
        "path": ap.path,
        "uid": ap.uid,
        "gid": ap.gid,
        "secondary_gids": sorted(ap.secondary_gids),
        "owner_uid": ap.uid if ap.owner_uid is None else ap.owner_uid,
        "owner_gid": ap.gid if ap.owner_gid is None else ap.owner_gid,
        "permissions": ap.permissions.lstrip("0").rjust(3, "0"),
    }


def _lifecycle_state(policies: list[dict[str, str]]) -> dict[str, Any]:
    merged: dict[str, str] = {}
    for policy in policies:
        merged.update(policy)
    return {
        "transition_to_ia_days": _WORDS_DAYS.get(merged.get("TransitionToIA", "")),
        "transition_to_primary": merged.get("TransitionToPrimaryStorageClass") == "AFTER_1_ACCESS",
    }


def _lifecycle_policies(desired: dict[str, Any]) -> list[dict[str, str]]:
    policies = []
    if desired.get("transition_to_ia_days"):
        policies.append({"TransitionToIA": _DAYS_WORDS[desired["transition_to_ia_days"]]})
    if desired.get("transition_to_primary"):
        policies.append({"TransitionToPrimaryStorageClass": "AFTER_1_ACCESS"})
    return policies


FILE_SYSTEMS = FileSystemKind(FileSystemConfig)
