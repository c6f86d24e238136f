"""S3 buckets: versioning, default encryption, public access block, policy, CORS, lifecycle,
server access logging, tags.

Every setting is its own S3 sub-resource with its own Get/Put call; only the declared ones are
read. Bucket names are global: a name another account owns is a clear error, not an adoption.
`PutBucketTagging` replaces the whole tag set, so tags others added are carried over. A bucket
is never emptied to be deleted: pruning a bucket with objects in it fails with the reason.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from daemon.base.awserrors import error_code, http_status
from daemon.base.fields import BucketRef, KmsKeyRef, Section
from daemon.resources.bucket_settings import GETTERS, READERS, WRITERS, clean
from daemon.resources.diff import Entries
from daemon.resources.kind import (
    ACCESS_DENIED,
    Declared,
    Found,
    Kind,
    NameRule,
    Observed,
    Place,
    Problem,
    ResourceBase,
    ResourceFailed,
    ResourceRef,
    Session,
    owned_by,
    ownership_tags,
)


def _policy_document(value: Any) -> dict[str, Any] | None:
    """A policy given as a TOML table or as JSON text; either way a dict with `Statement`."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object (or a TOML table)")
    if "Statement" not in value:
        raise ValueError("a policy document needs a 'Statement' list")
    return value


class CorsRule(Section):
    """One CORS rule."""

    allowed_origins: list[str] = Field(min_length=1)
    """Origins allowed, for example `["https://example.com"]`."""

    allowed_methods: list[Literal["GET", "PUT", "POST", "DELETE", "HEAD"]] = Field(min_length=1)
    """HTTP methods allowed."""

    allowed_headers: list[str] = Field(default_factory=list)
    """Request headers allowed in a preflight."""

    expose_headers: list[str] = Field(default_factory=list)
    """Response headers a browser may read."""

    max_age: int | None = Field(default=None, ge=0)
    """Seconds a browser may cache the preflight response."""


class Transition(Section):
    """Move objects to another storage class."""

    days: int = Field(ge=0)
    """Days after creation."""

    storage_class: Literal[
        "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"
    ]
    """Target storage class."""


class LifecycleRule(Section):
    """One lifecycle rule."""

    id: str = Field(min_length=1, max_length=255)
    """Rule id (unique within the bucket)."""

    prefix: str = ""
    """Object key prefix the rule applies to; empty for every object."""

    enabled: bool = True
    """Whether the rule is active."""

    expire_days: int | None = Field(default=None, ge=1)
    """Delete objects this many days after creation."""

    noncurrent_expire_days: int | None = Field(default=None, ge=1)
    """With versioning: delete old versions this many days after they became noncurrent."""

    abort_incomplete_upload_days: int | None = Field(default=None, ge=1)
    """Abort multipart uploads left incomplete for this many days."""

    transitions: list[Transition] = Field(default_factory=list)
    """Storage class transitions."""


class BucketLogging(Section):
    """Server access logging."""

    target_bucket: BucketRef
    """Bucket that receives the logs: a declared bucket's logical name, or a bucket name or ARN
    of a bucket awsd does not manage."""

    prefix: str = ""
    """Key prefix of the log objects."""


class BucketConfig(ResourceBase):
    """An S3 bucket."""

    versioning: bool | None = None
    """Keep every version of every object (`false` suspends versioning)."""

    encryption: Literal["sse-s3", "sse-kms"] | None = None
    """Default encryption: SSE-S3 (AES256) or SSE-KMS (with `kms_key_id`)."""

    kms_key_id: KmsKeyRef | None = None
    """KMS key for `encryption = "sse-kms"`; unset: the AWS managed key."""

    bucket_key: bool | None = None
    """Use an S3 Bucket Key with SSE-KMS (fewer KMS calls)."""

    block_public_access: bool | None = None
    """All four public access block settings on (or off)."""

    policy: dict[str, Any] | None = None
    """Bucket policy, as a TOML table or JSON text. The statements below are added to it."""

    deny_unencrypted_uploads: bool | None = None
    """Add a statement denying PutObject requests that do not ask for server-side encryption."""

    deny_insecure_transport: bool | None = None
    """Add a statement denying every request not made over TLS."""

    cors: list[CorsRule] | None = None
    """CORS rules (an empty list removes them)."""

    lifecycle: list[LifecycleRule] | None = None
    """Lifecycle rules (an empty list removes them)."""

    logging: BucketLogging | None = None
    """Server access logging to a target bucket."""

    @field_validator("policy", mode="before")
    @classmethod
    def _parse_policy(cls, value: Any) -> Any:
        return _policy_document(value)

    @model_validator(mode="after")
    def _consistent(self) -> BucketConfig:
        if self.encryption != "sse-kms" and (
            self.kms_key_id is not None or self.bucket_key is not None
        ):
            raise ValueError('kms_key_id and bucket_key need encryption = "sse-kms"')
        if self.lifecycle:
            ids = [rule.id for rule in self.lifecycle]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"duplicate lifecycle rule ids: {', '.join(dupes)}")
        return self


MISSING = frozenset({"NoSuchBucket", "404", "NotFound"})
NO_TAGS = frozenset({"NoSuchTagSet"})

_POLICY_FIELDS = {"policy", "deny_unencrypted_uploads", "deny_insecure_transport"}
_ENCRYPTION_FIELDS = {"encryption", "kms_key_id", "bucket_key"}


class BucketKind(Kind[BucketConfig]):
    name = "buckets"
    singular = "bucket"
    name_rule = NameRule(
        re.compile(r"^(?!xn--)(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
        "3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit",
    )
    service = "s3"
    tag_read_actions = ("s3:GetBucketTagging",)
    read_actions = (
        "s3:ListBucket",
        "s3:GetBucketVersioning",
        "s3:GetEncryptionConfiguration",
        "s3:GetBucketPublicAccessBlock",
        "s3:GetBucketPolicy",
        "s3:GetBucketCORS",
        "s3:GetLifecycleConfiguration",
        "s3:GetBucketLogging",
        "s3:GetBucketTagging",
    )
    write_actions = (
        "s3:CreateBucket",
        "s3:PutBucketVersioning",
        "s3:PutEncryptionConfiguration",
        "s3:PutBucketPublicAccessBlock",
        "s3:PutBucketPolicy",
        "s3:PutBucketCORS",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketLogging",
        "s3:PutBucketTagging",
    )
    delete_actions = ("s3:DeleteBucket",)
    list_actions = ("s3:ListAllMyBuckets",)

    def references(self, name: str, spec: BucketConfig, all_declared: Any) -> list[ResourceRef]:
        # A target bucket that is not declared is named by its AWS name: not a reference.
        target = spec.logging.target_bucket if spec.logging else None
        if target is None or target not in all_declared.buckets:
            return []
        path = f"resources.buckets.{name}.logging.target_bucket"
        return [ResourceRef("buckets", target, path, f"bucket.{name}")]

    def problems(self, declared: dict[str, BucketConfig], all_declared: Any) -> list[Problem]:
        return [
            (
                f"resources.buckets.{name}.logging.target_bucket",
                "a bucket should not log to itself (every log write makes another log)",
            )
            for name, bucket in declared.items()
            if bucket.logging and bucket.logging.target_bucket == name
        ]

    def arn(self, physical: str, ctx: Place) -> str:
        return f"arn:{ctx.partition}:s3:::{physical}"

    def desired(self, res: Declared, ctx: Session) -> dict[str, Any]:
        spec = res.spec
        assert isinstance(spec, BucketConfig)
        out: dict[str, Any] = {}
        if spec.versioning is not None:
            out["versioning"] = spec.versioning
        for field in ("encryption", "kms_key_id", "bucket_key"):
            if getattr(spec, field) is not None:
                out[field] = getattr(spec, field)
        if spec.block_public_access is not None:
            out["block_public_access"] = spec.block_public_access
        policy = _policy(spec, res.arn, _log_delivery(res, ctx) + _distribution_reads(res, ctx))
        if policy is not None:
            out["policy"] = policy
        if spec.cors is not None:
            out["cors"] = [clean(rule.model_dump()) for rule in spec.cors]
        if spec.lifecycle is not None:
            out["lifecycle"] = [clean(rule.model_dump()) for rule in spec.lifecycle]
        if spec.logging is not None:
            out["logging"] = {
                "target_bucket": ctx.physical_of("buckets", spec.logging.target_bucket),
                "prefix": spec.logging.prefix,
            }
        out["tags"] = Entries({**spec.tags, **ownership_tags(ctx.env)})
        return out

    def compared(self, res: Declared) -> set[str]:
        # The policy is compared whenever there is one: declared, or generated for the
        # buckets that log here.
        return (super().compared(res) - _POLICY_FIELDS) | {"policy"}

    async def read(self, ctx: Session, res: Declared) -> Observed | None:
        name = res.physical
        try:
            await ctx.call("s3", "head_bucket", Bucket=name)
        except Exception as exc:
            if error_code(exc) in MISSING or http_status(exc) == 404:
                return None
            if http_status(exc) == 403:
                raise ResourceFailed(
                    f"bucket {name!r} exists but this account cannot see it: either another "
                    "account owns the name (bucket names are global; add {account} to it) or "
                    "the credentials lack s3:ListBucket on it"
                ) from exc
            raise
        state: dict[str, Any] = {}
        compared = self.compared(res) & set(self.desired(res, ctx))
        if compared & _ENCRYPTION_FIELDS:
            compared = (compared - _ENCRYPTION_FIELDS) | {"encryption"}
        for setting in compared & set(GETTERS):
            operation, absent = GETTERS[setting]
            got = await ctx.call_or_none(absent, "s3", operation, Bucket=name)
            state.update(READERS[setting](got))
        tags = await ctx.call_or_none(NO_TAGS, "s3", "get_bucket_tagging", Bucket=name)
        state["tags"] = {t["Key"]: t["Value"] for t in (tags or {}).get("TagSet", [])}
        return Observed(state)

    async def create(self, ctx: Session, res: Declared, desired: dict[str, Any]) -> None:
        params: dict[str, Any] = {"Bucket": res.physical}
        if ctx.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
        try:
            await ctx.call("s3", "create_bucket", **params)
        except Exception as exc:
            code = error_code(exc)
            if code == "BucketAlreadyExists":
                raise ResourceFailed(
                    f"the bucket name {res.physical!r} belongs to another AWS account (bucket "
                    "names are global): choose another `name`, for example with {account} in it"
                ) from exc
            if code != "BucketAlreadyOwnedByYou":
                raise
        # Settings and tags follow through `update`: S3 takes them one sub-resource at a time.

    async def update(
        self,
        ctx: Session,
        res: Declared,
        observed: Observed,
        desired: dict[str, Any],
        changed: set[str],
    ) -> None:
        name = res.physical
        # Public access block first: it decides whether the policy that follows is accepted.
        if changed & _ENCRYPTION_FIELDS:
            changed = changed | {"encryption"}
        for setting in ("block_public_access", "versioning", "encryption", "policy", "cors",
                        "lifecycle", "logging"):  # fmt: skip
            if setting in changed and setting in desired:
                await WRITERS[setting](ctx, name, desired)
        if "tags" in changed:
            merged = {**observed.tags, **dict(desired["tags"])}
            await ctx.call(
                "s3",
                "put_bucket_tagging",
                Bucket=name,
                Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in sorted(merged.items())]},
            )

    async def delete(self, ctx: Session, found: Found) -> None:
        try:
            await ctx.call("s3", "delete_bucket", Bucket=found.physical)
        except Exception as exc:
            if error_code(exc) == "BucketNotEmpty":
                raise ResourceFailed(
                    f"bucket {found.physical!r} is not empty; awsd never deletes objects: "
                    "empty it yourself (or keep it declared)"
                ) from exc
            if error_code(exc) not in MISSING:
                raise

    async def discover(self, ctx: Session) -> list[Found]:
        owned: list[Found] = []
        listing = await ctx.call("s3", "list_buckets")
        for bucket in listing.get("Buckets", []):
            name = bucket["Name"]
            try:
                tags = await ctx.call_or_none(
                    NO_TAGS | ACCESS_DENIED, "s3", "get_bucket_tagging", Bucket=name
                )
            except Exception:  # noqa: BLE001 - another region or no access: not provably ours
                continue
            found_tags = {t["Key"]: t["Value"] for t in (tags or {}).get("TagSet", [])}
            if owned_by(found_tags, ctx.env):
                owned.append(Found("buckets", name, self.arn(name, ctx), found_tags))
        return owned


def _log_delivery(res: Declared, ctx: Session) -> list[dict[str, Any]]:
    """Statements letting S3 server access logging write here, one per declared bucket that
    logs to this one (AWS's recommended form: the logging service, from that bucket only)."""
    statements = []
    for name, bucket in ctx.config.resources.buckets.items():
        if bucket.logging is None or bucket.logging.target_bucket != res.name:
            continue
        statements.append(
            {
                "Sid": "awsdAccessLogs" + re.sub(r"[^A-Za-z0-9]", "", name.title()),
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"{res.arn}/{bucket.logging.prefix}*",
                "Condition": {
                    "ArnLike": {"aws:SourceArn": ctx.arn_of("buckets", name)},
                    "StringEquals": {"aws:SourceAccount": ctx.account},
                },
            }
        )
    return statements


def _distribution_reads(res: Declared, ctx: Session) -> list[dict[str, Any]]:
    """Statements letting CloudFront read objects for each declared distribution whose origin
    is this bucket, from that distribution's ARN only (origin access control, AWS's recommended
    form). A distribution not created yet has no ARN: its statement comes once it exists (the
    apply that creates it plans again, `daemon.reconcile.apply`)."""
    statements = []
    for name, dist in ctx.config.resources.distributions.items():
        if dist.origin.bucket != res.name:
            continue
        arn = ctx.arn_of("distributions", name)
        if arn.endswith("/*"):
            continue
        statements.append(
            {
                "Sid": "awsdCloudFront" + re.sub(r"[^A-Za-z0-9]", "", name.title()),
                "Effect": "Allow",
                "Principal": {"Service": "cloudfront.amazonaws.com"},
                "Action": "s3:GetObject",
                "Resource": f"{res.arn}{dist.origin.path}/*",
                "Condition": {"StringEquals": {"AWS:SourceArn": arn}},
            }
        )
    return statements


def _policy(spec: BucketConfig, arn: str, generated: list[dict[str, Any]]) -> dict[str, Any] | None:
    raw = (spec.policy or {}).get("Statement", [])
    statements: list[Any] = [raw] if isinstance(raw, dict) else list(raw)
    statements += generated
    if spec.deny_unencrypted_uploads:
        statements.append(
            {
                "Sid": "awsdDenyUnencryptedUploads",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"{arn}/*",
                "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}},
            }
        )
    if spec.deny_insecure_transport:
        statements.append(
            {
                "Sid": "awsdDenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        )
    if not statements:
        return None
    return {**(spec.policy or {}), "Version": "2012-10-17", "Statement": statements}


# --- reading each setting into the config's vocabulary ----------------------------------------


BUCKETS = BucketKind(BucketConfig)
