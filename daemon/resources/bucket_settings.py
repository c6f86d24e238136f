"""S3 bucket settings as AWS returns and takes them: one reader and one writer per setting.

Each setting of a bucket (versioning, encryption, public access block, policy, CORS, lifecycle,
logging) has its own Get/Put/Delete calls and its own shapes; `READERS` turn what AWS returns
into the config's vocabulary, `WRITERS` make one setting so. `buckets.py` decides which.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.resources.kind import Session

# setting -> (get operation, "not configured" error codes)
GETTERS: dict[str, tuple[str, frozenset[str]]] = {
    "versioning": ("get_bucket_versioning", frozenset()),
    "encryption": (
        "get_bucket_encryption",
        frozenset({"ServerSideEncryptionConfigurationNotFoundError"}),
    ),
    "block_public_access": (
        "get_public_access_block",
        frozenset({"NoSuchPublicAccessBlockConfiguration"}),
    ),
    "policy": ("get_bucket_policy", frozenset({"NoSuchBucketPolicy"})),
    "cors": ("get_bucket_cors", frozenset({"NoSuchCORSConfiguration"})),
    "lifecycle": (
        "get_bucket_lifecycle_configuration",
        frozenset({"NoSuchLifecycleConfiguration"}),
    ),
    "logging": ("get_bucket_logging", frozenset()),
}


def clean(value: Any) -> Any:
    """Drop None and empty values, so the config's defaults and AWS's omissions compare equal."""
    if isinstance(value, dict):
        cleaned = {k: clean(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, [], {}, "")}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def _read_versioning(got: dict[str, Any] | None) -> dict[str, Any]:
    return {"versioning": bool(got and got.get("Status") == "Enabled")}


_ALGORITHMS = {"AES256": "sse-s3", "aws:kms": "sse-kms", "aws:kms:dsse": "dsse-kms"}


def _read_encryption(got: dict[str, Any] | None) -> dict[str, Any]:
    rules = ((got or {}).get("ServerSideEncryptionConfiguration") or {}).get("Rules") or []
    if not rules:
        return {"encryption": None}
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {})
    algorithm = default.get("SSEAlgorithm")
    return {
        "encryption": _ALGORITHMS.get(algorithm, algorithm),
        "kms_key_id": default.get("KMSMasterKeyID"),
        "bucket_key": bool(rules[0].get("BucketKeyEnabled", False)),
    }


def _read_public_access(got: dict[str, Any] | None) -> dict[str, Any]:
    flags = list(((got or {}).get("PublicAccessBlockConfiguration") or {}).values())
    if flags and all(flags):
        return {"block_public_access": True}
    return {"block_public_access": "partly" if any(flags) else False}


def _read_policy(got: dict[str, Any] | None) -> dict[str, Any]:
    return {"policy": json.loads(got["Policy"]) if got and got.get("Policy") else None}


def _read_cors(got: dict[str, Any] | None) -> dict[str, Any]:
    rules = (got or {}).get("CORSRules", [])
    return {
        "cors": [
            clean(
                {
                    "allowed_origins": r.get("AllowedOrigins"),
                    "allowed_methods": r.get("AllowedMethods"),
                    "allowed_headers": r.get("AllowedHeaders"),
                    "expose_headers": r.get("ExposeHeaders"),
                    "max_age": r.get("MaxAgeSeconds"),
                }
            )
            for r in rules
        ]
    }


def _read_lifecycle(got: dict[str, Any] | None) -> dict[str, Any]:
    out = []
    for rule in (got or {}).get("Rules", []):
        prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
        out.append(
            clean(
                {
                    "id": rule.get("ID"),
                    "prefix": prefix,
                    "enabled": rule.get("Status") == "Enabled",
                    "expire_days": rule.get("Expiration", {}).get("Days"),
                    "noncurrent_expire_days": rule.get("NoncurrentVersionExpiration", {}).get(
                        "NoncurrentDays"
                    ),
                    "abort_incomplete_upload_days": rule.get(
                        "AbortIncompleteMultipartUpload", {}
                    ).get("DaysAfterInitiation"),
                    "transitions": [
                        {"days": t.get("Days"), "storage_class": t.get("StorageClass")}
                        for t in rule.get("Transitions", [])
                    ],
                }
            )
        )
    return {"lifecycle": out}


def _read_logging(got: dict[str, Any] | None) -> dict[str, Any]:
    enabled = (got or {}).get("LoggingEnabled")
    if not enabled:
        return {"logging": None}
    return {
        "logging": {
            "target_bucket": enabled.get("TargetBucket"),
            "prefix": enabled.get("TargetPrefix", ""),
        }
    }


Reader = Callable[[dict[str, Any] | None], dict[str, Any]]
Writer = Callable[[Session, str, dict[str, Any]], Awaitable[None]]

READERS: dict[str, Reader] = {
    "versioning": _read_versioning,
    "encryption": _read_encryption,
    "block_public_access": _read_public_access,
    "policy": _read_policy,
    "cors": _read_cors,
    "lifecycle": _read_lifecycle,
    "logging": _read_logging,
}


# --- writing each setting ---------------------------------------------------------------------


async def _write_versioning(ctx: Session, name: str, desired: dict[str, Any]) -> None:
    status = "Enabled" if desired["versioning"] else "Suspended"
    await ctx.call(
        "s3", "put_bucket_versioning", Bucket=name, VersioningConfiguration={"Status": status}
    )


async def _write_encryption(ctx: Session, name: str, desired: dict[str, Any]) -> None:
    algorithm = {v: k for k, v in _ALGORITHMS.items()}[desired["encryption"]]
    default: dict[str, Any] = {"SSEAlgorithm": algorithm}
    if desired.get("kms_key_id"):
        default["KMSMasterKeyID"] = desired["kms_key_id"]
    rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": default}
    if "bucket_key" in desired:
        rule["BucketKeyEnabled"] = desired["bucket_key"]
    await ctx.call(
        "s3",
        "put_bucket_encryption",
        Bucket=name,
        ServerSideEncryptionConfiguration={"Rules": [rule]},
    )


async def _write_public_access(ctx: Session, name: str, desired: dict[str, Any]) -> None:
    flags = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    await ctx.call(
        "s3",
        "put_public_access_block",
        Bucket=name,
        PublicAccessBlockConfiguration=dict.fromkeys(flags, bool(desired["block_public_access"])),
    )


async def _write_policy(ctx: Session, name: str, desired: dict[str, Any]) -> None:
    await ctx.call("s3", "put_bucket_policy", Bucket=name, Policy=json.dumps(desired["policy"]))


async def _write_cors(ctx: Session, name: str, desired: dict[str, Any]) -> None:
    rules: list[dict[str, Any]] = desired["cors"]
    if not rules:
        await ctx.call("s3", "delete_bucket_cors", Bucket=name)
        return
    aws_rules = [
        clean(
            {
                "AllowedOrigins": r["allowed_origins"],
                "AllowedMethods": r["allowed_methods"],
                "AllowedHeaders": r.get("allowed_headers"),
                "ExposeHeaders": r.get("expose_headers"),
                "MaxAgeSeconds": r.get("max_age"),
            }
        )
        for r in rules
    ]
    await ctx.call("s3", "put_bucket_cors", Bucket=name, CORSConfiguration={"CORSRules": aws_rules})


async def _write_lifecycle(ctx: Session, name: str, desired: dict[str, Any]) -> None:
    rules: list[dict[str, Any]] = desired["lifecycle"]
    if not rules:
        await ctx.call("s3", "delete_bucket_lifecycle", Bucket=name)
        return
    aws_rules = []
    for r in rules:
        rule: dict[str, Any] = {
            "ID": r["id"],
            "Filter": {"Prefix": r.get("prefix", "")},
            "Status": "Enabled" if r.get("enabled", True) else "Disabled",
        }
        if r.get("expire_days"):
            rule["Expiration"] = {"Days": r["expire_days"]}
        if r.get("noncurrent_expire_days"):
            rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": r["noncurrent_expire_days"]}
        if r.get("abort_incomplete_upload_days"):
            rule["AbortIncompleteMultipartUpload"] = {
                "DaysAfterInitiation": r["abort_incomplete_upload_days"]
            }
        if r.get("transitions"):
            rule["Transitions"] = [
                {"Days": t["days"], "StorageClass": t["storage_class"]} for t in r["transitions"]
            ]
        aws_rules.append(rule)
    await ctx.call(
        "s3",
        "put_bucket_lifecycle_configuration",
        Bucket=name,
        LifecycleConfiguration={"Rules": aws_rules},
    )


async def _write_logging(ctx: Session, name: str, desired: dict[str, Any]) -> None:
    logging = desired["logging"]
    status = {
        "LoggingEnabled": {
            "TargetBucket": logging["target_bucket"],
            "TargetPrefix": logging["prefix"],
        }
    }
    await ctx.call("s3", "put_bucket_logging", Bucket=name, BucketLoggingStatus=status)


WRITERS: dict[str, Writer] = {
    "versioning": _write_versioning,
    "encryption": _write_encryption,
    "block_public_access": _write_public_access,
    "policy": _write_policy,
    "cors": _write_cors,
    "lifecycle": _write_lifecycle,
    "logging": _write_logging,
}
