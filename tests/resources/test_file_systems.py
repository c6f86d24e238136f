"""EFS file systems on a real moto server: create -> plan clean (with the DNS name shown) ->
drift -> enforce -> delete, with their mount targets in the default VPC, the NFS security group
and access points. moto implements neither UpdateFileSystem nor PutBackupPolicy, so throughput
mode and backup are set at creation here, and their changes are left to real AWS."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.config import ConfigError
from daemon.reconcile.plan import make_plan
from daemon.reconcile.render import render_plan
from tests.support.resources import changed, load, plan_and_apply, session, unique_env

AP = {"data": {"path": "/data", "uid": 1000, "gid": 1000, "permissions": "0750"}}


def shared(**fields: Any) -> dict[str, Any]:
    return {
        "mode": "enforce",
        "file_systems": {
            "shared": {
                "throughput_mode": "bursting",
                "backup": True,
                "transition_to_ia_days": 30,
                "mount_targets": [{"subnet": "default.us-east-1a"}],
                "nfs_from": ["172.31.0.0/16"],
                "access_points": AP,
                **fields,
            }
        },
    }


def file_system(boto: Any, env: str) -> dict[str, Any]:
    (found,) = boto("efs").describe_file_systems(CreationToken=f"{env}-shared")["FileSystems"]
    return dict(found)


async def test_a_file_system_is_created_with_its_parts_and_plans_clean_showing_its_dns_name(
    configs: Any, boto: Any
):
    env = unique_env("e")
    config = load(configs, env, shared())
    async with session(config) as ctx:
        await plan_and_apply(ctx)
        again = await make_plan(ctx)
    assert changed(again) == {}
    fs = file_system(boto, env)
    fs_id = fs["FileSystemId"]
    assert (fs["ThroughputMode"], fs["Encrypted"], fs["PerformanceMode"]) == (
        "bursting",
        True,
        "generalPurpose",
    )
    assert f"{fs_id}.efs.us-east-1.amazonaws.com" in render_plan(again)
    efs, ec2 = boto("efs"), boto("ec2")
    (target,) = efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"]
    assert target["AvailabilityZoneName"] == "us-east-1a"
    groups = efs.describe_mount_target_security_groups(MountTargetId=target["MountTargetId"])
    (group,) = ec2.describe_security_groups(GroupIds=groups["SecurityGroups"])["SecurityGroups"]
    assert group["GroupName"] == f"{env}-shared-nfs"
    (rule,) = group["IpPermissions"]
    assert (rule["FromPort"], rule["IpRanges"][0]["CidrIp"]) == (2049, "172.31.0.0/16")
    (point,) = efs.describe_access_points(FileSystemId=fs_id)["AccessPoints"]
    assert point["RootDirectory"]["Path"] == "/data" and point["PosixUser"]["Uid"] == 1000
    policies = efs.describe_lifecycle_configuration(FileSystemId=fs_id)["LifecyclePolicies"]
    assert policies == [{"TransitionToIA": "AFTER_30_DAYS"}]
    assert efs.describe_backup_policy(FileSystemId=fs_id)["BackupPolicy"]["Status"] == "ENABLED"


async def test_file_system_drift_is_enforced(configs: Any, boto: Any):
    env = unique_env("e")
    config = load(configs, env, shared())
    async with session(config) as ctx:
        await plan_and_apply(ctx)
        fs_id = file_system(boto, env)["FileSystemId"]
        efs, ec2 = boto("efs"), boto("ec2")
        efs.put_lifecycle_configuration(
            FileSystemId=fs_id, LifecyclePolicies=[{"TransitionToIA": "AFTER_7_DAYS"}]
        )
        for point in efs.describe_access_points(FileSystemId=fs_id)["AccessPoints"]:
            efs.delete_access_point(AccessPointId=point["AccessPointId"])
        for target in efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"]:
            efs.delete_mount_target(MountTargetId=target["MountTargetId"])
        group = ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [f"{env}-shared-nfs"]}]
        )["SecurityGroups"][0]
        ec2.authorize_security_group_ingress(
            GroupId=group["GroupId"],
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 2049,
                    "ToPort": 2049,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                }
            ],
        )
        drift = await make_plan(ctx)
        assert set(changed(drift)["file_system.shared"]) == {
            "transition_to_ia_days",
            "mount_targets[default.us-east-1a]",
            "nfs_from",
            "access_points.data",
        }
        await plan_and_apply(ctx)
        assert changed(await make_plan(ctx)) == {}
    assert len(efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"]) == 1


async def test_performance_mode_or_encryption_changes_replace_and_prune_deletes_every_part(
    configs: Any, boto: Any
):
    env = unique_env("e")
    async with session(load(configs, env, shared())) as ctx:
        await plan_and_apply(ctx)
        changed_mode = load(configs, env, shared(performance_mode="maxIO"))
    async with session(changed_mode) as ctx:
        plan = await make_plan(ctx)
        (res,) = [r for r in plan.resources if r.kind == "file_systems"]
        assert res.action == "replace"
        assert "-/+ file_system.shared" in render_plan(plan)
    fs_id = file_system(boto, env)["FileSystemId"]
    async with session(load(configs, env, {"mode": "enforce", "prune": True})) as ctx:
        pruned = await make_plan(ctx)
        assert [r.resource for r in pruned.resources if r.action == "delete"] == [
            f"file_system.{env}-shared"
        ]
        await plan_and_apply(ctx)
    assert boto("efs").describe_file_systems(CreationToken=f"{env}-shared")["FileSystems"] == []
    assert boto("efs").describe_access_points(FileSystemId=fs_id)["AccessPoints"] == []
    groups = boto("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"{env}-shared-nfs"]}]
    )["SecurityGroups"]
    assert groups == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"mount_targets": [{"subnet": "main.private-a"}]}, "network resource kinds"),
        ({"nfs_from": ["everyone"]}, "neither a security group id"),
        ({"throughput_mode": "provisioned"}, "provisioned_mibps"),
        ({"encrypted": False, "kms_key_id": "alias/x"}, "kms_key_id needs encrypted"),
    ],
)
def test_bad_file_system_declarations_are_refused(configs: Any, fields: Any, reason: str):
    with pytest.raises(ConfigError) as caught:
        load(configs, unique_env("e"), shared(**fields))
    assert reason in caught.value.render()
