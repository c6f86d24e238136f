"""The parts of an EFS file system that are resources of their own in AWS but belong to one
file system in the config: mount targets, the NFS security group, access points.
`file_systems.py` decides when; these read and write them.

- Mount targets are keyed by the subnet reference as written (`subnet-...`, `default.<zone>`),
  resolved to a subnet when read or written. One nobody declared is left alone.
- The NFS group `<name>-nfs` (made when `nfs_from` is set, in the VPC of the mount targets)
  allows TCP 2049 from exactly the declared sources; it is awsd's, so other rules on that port
  are revoked. It appears in a mount target's groups by its name, in the config's vocabulary.
- Access points are keyed by their `Name` tag; EFS cannot change one, so one that differs is
  deleted and made again. One nobody declared is left alone.

`resolve_subnet` and `resolve_group` are where references to declared VPCs' subnets
(`"<vpc>.<subnet>"`) and declared security groups resolve once those are resource kinds.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from daemon.base.awserrors import error_code
from daemon.resources.diff import equal, is_ignored, join
from daemon.resources.kind import (
    Declared,
    Observed,
    ResourceFailed,
    Session,
    tag_dict,
    tag_list,
)

SUBNET_REF = re.compile(r"^subnet-[0-9a-f]{8,17}$|^default\.[a-z]{2}(-[a-z]+)+-\d[a-z]$")
"""A subnet id, or `default.<availability zone>`."""
GROUP_REF = re.compile(r"^sg-[0-9a-f]{8,17}$")
"""A security group id."""
NFS_PORT = 2049
MISSING = frozenset({"MountTargetNotFound", "AccessPointNotFound", "FileSystemNotFound"})
GROUP_MISSING = frozenset({"InvalidGroup.NotFound", "InvalidGroupId.NotFound"})
GONE_BUDGET = 300.0


def nfs_group_name(physical: str) -> str:
    return f"{physical}-nfs"


# --- references -----------------------------------------------------------------------------


async def resolve_subnet(ctx: Session, ref: str) -> dict[str, Any]:
    """The subnet a reference names (`SubnetId`, `VpcId`, `AvailabilityZone`)."""
    if ref.startswith("subnet-"):
        got = await ctx.call_or_none(
            frozenset({"InvalidSubnetID.NotFound"}), "ec2", "describe_subnets", SubnetIds=[ref]
        )
    else:  # default.<zone>; "<vpc>.<subnet>" of declared VPCs resolves here once they exist
        zone = ref.split(".", 1)[1]
        got = await ctx.call(
            "ec2",
            "describe_subnets",
            Filters=[
                {"Name": "default-for-az", "Values": ["true"]},
                {"Name": "availability-zone", "Values": [zone]},
            ],
        )
    subnets = (got or {}).get("Subnets", [])
    if not subnets:
        raise ResourceFailed(f"no subnet {ref} in this account and region")
    return dict(subnets[0])


def resolve_group(ref: str) -> str:
    """The id of a security group reference (ids only, until security groups are declared)."""
    return ref


# --- the NFS security group -----------------------------------------------------------------


async def _find_group(ctx: Session, name: str) -> dict[str, Any] | None:
    got = await ctx.call(
        "ec2", "describe_security_groups", Filters=[{"Name": "group-name", "Values": [name]}]
    )
    groups = got.get("SecurityGroups", [])
    return dict(groups[0]) if groups else None


def _nfs_sources(group: dict[str, Any]) -> list[str]:
    sources: set[str] = set()
    for rule in group.get("IpPermissions", []):
        if rule.get("FromPort") != NFS_PORT or rule.get("IpProtocol") != "tcp":
            continue
        sources.update(pair["GroupId"] for pair in rule.get("UserIdGroupPairs", []))
        sources.update(r["CidrIp"] for r in rule.get("IpRanges", []))
    return sorted(sources)


async def read_nfs_group(ctx: Session, physical: str, spec: Any) -> tuple[str | None, list[str]]:
    """(the NFS group's id, the sources it allows), or (None, []) when there is none."""
    if not spec.nfs_from:
        return None, []
    group = await _find_group(ctx, nfs_group_name(physical))
    if group is None:
        return None, []
    return str(group["GroupId"]), _nfs_sources(group)


def _permission(source: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": NFS_PORT, "ToPort": NFS_PORT}
    if source.startswith("sg-"):
        rule["UserIdGroupPairs"] = [{"GroupId": resolve_group(source)}]
    else:
        rule["IpRanges"] = [{"CidrIp": source, "Description": "awsd: NFS clients"}]
    return rule


async def write_nfs_group(ctx: Session, res: Declared, spec: Any, tags: dict[str, str]) -> str:
    """Make the NFS group allow exactly `spec.nfs_from`; return its id."""
    name = nfs_group_name(res.physical)
    group = await _find_group(ctx, name)
    if group is None:
        if not spec.mount_targets:
            raise ResourceFailed("nfs_from needs a mount target (its subnet gives the VPC)")
        subnet = await resolve_subnet(ctx, spec.mount_targets[0].subnet)
        created = await ctx.call(
            "ec2",
            "create_security_group",
            GroupName=name,
            Description=f"awsd: NFS to file system {res.physical}",
            VpcId=subnet["VpcId"],
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": tag_list({**tags, "Name": name})}
            ],
        )
        group = {"GroupId": created["GroupId"], "IpPermissions": []}
    group_id = str(group["GroupId"])
    have, want = set(_nfs_sources(group)), set(spec.nfs_from)
    if want - have:
        await ctx.call(
            "ec2",
            "authorize_security_group_ingress",
            GroupId=group_id,
            IpPermissions=[_permission(s) for s in sorted(want - have)],
        )
    if have - want:
        await ctx.call(
            "ec2",
            "revoke_security_group_ingress",
            GroupId=group_id,
            IpPermissions=[_permission(s) for s in sorted(have - want)],
        )
    return group_id


# --- mount targets --------------------------------------------------------------------------


async def _mount_targets(ctx: Session, fs_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"FileSystemId": fs_id}
    while True:
        page = await ctx.call_or_none(MISSING, "efs", "describe_mount_targets", **params)
        found += (page or {}).get("MountTargets", [])
        if not (page or {}).get("NextMarker"):
            return found
        params["Marker"] = page["NextMarker"]  # type: ignore[index]


def _matches(ref: str, target: dict[str, Any]) -> bool:
    """Whether a mount target is the one a subnet reference declares: by subnet id, or for
    `default.<zone>` by zone (EFS allows one mount target per zone), so reading needs no EC2
    call."""
    if ref.startswith("subnet-"):
        return bool(target.get("SubnetId") == ref)
    return bool(target.get("AvailabilityZoneName") == ref.split(".", 1)[1])


async def read_mount_targets(
    ctx: Session, fs_id: str, physical: str, spec: Any, group_id: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(subnet reference -> settings, subnet reference -> {"subnet", "id"}) of the declared
    mount targets that exist."""
    existing = await _mount_targets(ctx, fs_id)
    state: dict[str, Any] = {}
    handles: dict[str, Any] = {}
    for target in spec.mount_targets:
        found = next((t for t in existing if _matches(target.subnet, t)), None)
        if found is None:
            continue
        groups = await ctx.call(
            "efs", "describe_mount_target_security_groups", MountTargetId=found["MountTargetId"]
        )
        named = [
            nfs_group_name(physical) if g == group_id else g
            for g in groups.get("SecurityGroups", [])
        ]
        state[target.subnet] = {
            "security_groups": sorted(named),
            "ip_address": found.get("IpAddress"),
        }
        handles[target.subnet] = {"subnet": found["SubnetId"], "id": found["MountTargetId"]}
    return state, handles


async def write_mount_targets(
    ctx: Session, res: Declared, observed: Observed, spec: Any, group_id: str | None
) -> None:
    fs_id = observed.handle["id"]
    handles: dict[str, Any] = observed.handle.get("mount_targets", {})
    have = observed.state.get("mount_targets") or {}
    for target in spec.mount_targets:
        if is_ignored(join("mount_targets", target.subnet), res.spec.ignore):
            continue
        groups = [resolve_group(g) for g in target.security_groups]
        if group_id is not None:
            groups.append(group_id)
        current = have.get(target.subnet)
        if current is None:
            subnet = (await resolve_subnet(ctx, target.subnet))["SubnetId"]
            params: dict[str, Any] = {"FileSystemId": fs_id, "SubnetId": subnet}
            if groups:
                params["SecurityGroups"] = groups
            if target.ip_address:
                params["IpAddress"] = target.ip_address
            await ctx.call_or_none(
                frozenset({"MountTargetConflict"}), "efs", "create_mount_target", **params
            )
            continue
        if target.ip_address and current.get("ip_address") != target.ip_address:
            raise ResourceFailed(
                f"the mount target in {target.subnet} has address {current.get('ip_address')}; "
                "EFS cannot change it: delete that mount target and the next pass makes it anew"
            )
        named = sorted(
            [*target.security_groups, *([nfs_group_name(res.physical)] if group_id else [])]
        )
        if groups and not equal(named, current.get("security_groups")):
            await ctx.call(
                "efs",
                "modify_mount_target_security_groups",
                MountTargetId=handles[target.subnet]["id"],
                SecurityGroups=groups,
            )


# --- access points --------------------------------------------------------------------------


def _access_point_state(point: dict[str, Any]) -> dict[str, Any]:
    user = point.get("PosixUser") or {}
    root = point.get("RootDirectory") or {}
    creation = root.get("CreationInfo") or {}
    return {
        "path": root.get("Path", "/"),
        "uid": user.get("Uid"),
        "gid": user.get("Gid"),
        "secondary_gids": sorted(user.get("SecondaryGids") or []),
        "owner_uid": creation.get("OwnerUid"),
        "owner_gid": creation.get("OwnerGid"),
        "permissions": str(creation.get("Permissions", "")).lstrip("0").rjust(3, "0"),
    }


async def _access_points(ctx: Session, fs_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"FileSystemId": fs_id}
    while True:
        page = await ctx.call_or_none(MISSING, "efs", "describe_access_points", **params)
        found += (page or {}).get("AccessPoints", [])
        if not (page or {}).get("NextToken"):
            return found
        params["NextToken"] = page["NextToken"]  # type: ignore[index]


async def read_access_points(ctx: Session, fs_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(name -> settings, name -> access point id) of the file system's named access points."""
    state: dict[str, Any] = {}
    ids: dict[str, str] = {}
    for point in await _access_points(ctx, fs_id):
        name = point.get("Name") or tag_dict(point.get("Tags")).get("Name")
        if not name or name in state or point.get("LifeCycleState") == "deleting":
            continue
        state[name] = _access_point_state(point)
        ids[name] = point["AccessPointId"]
    return state, ids


async def write_access_points(
    ctx: Session, res: Declared, observed: Observed, desired: dict[str, Any]
) -> None:
    fs_id = observed.handle["id"]
    ids: dict[str, str] = observed.handle.get("access_points", {})
    have = observed.state.get("access_points") or {}
    owner = {k: v for k, v in dict(desired["tags"]).items() if k != "Name"}
    for name, want in desired["access_points"].items():
        if is_ignored(join("access_points", name), res.spec.ignore):
            continue
        if name in have and equal(dict(want), have[name]):
            continue
        if name in have:  # EFS cannot change an access point: replaced
            await ctx.call_or_none(MISSING, "efs", "delete_access_point", AccessPointId=ids[name])
        user: dict[str, Any] = {"Uid": want["uid"], "Gid": want["gid"]}
        if want["secondary_gids"]:
            user["SecondaryGids"] = want["secondary_gids"]
        token = hashlib.sha256(
            json.dumps([res.physical, name, dict(want)], sort_keys=True).encode()
        ).hexdigest()[:64]
        await ctx.call(
            "efs",
            "create_access_point",
            ClientToken=token,
            FileSystemId=fs_id,
            PosixUser=user,
            RootDirectory={
                "Path": want["path"],
                "CreationInfo": {
                    "OwnerUid": want["owner_uid"],
                    "OwnerGid": want["owner_gid"],
                    "Permissions": want["permissions"],
                },
            },
            Tags=tag_list({**owner, "Name": name}),
        )


# --- deleting a file system's parts ---------------------------------------------------------


async def delete_parts(ctx: Session, fs_id: str, physical: str) -> None:
    """Access points, mount targets (waiting until they are gone: EFS refuses to delete a file
    system that has any) and the NFS group."""
    for point in await _access_points(ctx, fs_id):
        await ctx.call_or_none(
            MISSING, "efs", "delete_access_point", AccessPointId=point["AccessPointId"]
        )
    for target in await _mount_targets(ctx, fs_id):
        await ctx.call_or_none(
            MISSING, "efs", "delete_mount_target", MountTargetId=target["MountTargetId"]
        )

    async def no_mount_targets() -> bool:
        return not await _mount_targets(ctx, fs_id)

    await ctx.poll(
        no_mount_targets, what=f"mount targets of {physical} deleted", budget=GONE_BUDGET
    )
    group = await _find_group(ctx, nfs_group_name(physical))
    if group is None:
        return

    async def group_deleted() -> bool:
        try:
            await ctx.call_or_none(
                GROUP_MISSING, "ec2", "delete_security_group", GroupId=group["GroupId"]
            )
        except Exception as exc:
            if error_code(exc) == "DependencyViolation":  # network interfaces still going
                return False
            raise
        return True

    await ctx.poll(
        group_deleted, what=f"security group {nfs_group_name(physical)} deleted", budget=GONE_BUDGET
    )
