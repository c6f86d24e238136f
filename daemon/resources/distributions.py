"""CloudFront distributions: one origin (a private declared bucket, or a custom host), the
default cache behaviour, aliases and certificate, error responses, tags.

A distribution has no name in AWS: awsd makes the physical name its `CallerReference` (unique per
account, fixed at creation, which CloudFront itself refuses to reuse) and finds it by that. Its id
(and so its ARN) is assigned by AWS; `assigns_ids` lets the planner read it before the resources
that name it (the bucket policy, `daemon.resources.buckets`).

A bucket origin is private: awsd creates an origin access control (named like the distribution),
puts its id on the origin, and the bucket's generated policy gets a statement letting only this
distribution's ARN read (`s3:GetObject`); the bucket needs no public access at all.

`UpdateDistribution` replaces the whole configuration, so an update reads the current one (with
its ETag), changes the declared fields only and sends it back with `IfMatch`; settings someone
else made (logging, WAF, extra behaviours) stay. Apply returns once CloudFront accepted the
change; the deployment takes minutes, and the reconciler's passes report the `status` output
going `InProgress` -> `Deployed` (`daemon.reconcile.passes`).

CloudFront deletes only a disabled, deployed distribution: pruning one disables it on a pass
(`DeletePending`) and deletes it (and its origin access control) on a later pass, which the
plan says.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import Field, model_validator

from daemon.base.awserrors import error_code
from daemon.base.fields import Section
from daemon.resources.diff import Entries
from daemon.resources.kind import (
    ACCESS_DENIED,
    Declared,
    DeletePending,
    Found,
    Kind,
    NameRule,
    Observed,
    Place,
    ResourceBase,
    ResourceRef,
    Session,
    owned_by,
    ownership_tags,
    tag_list,
    tags_to_set,
)

MANAGED_CACHE_POLICIES = {
    "CachingOptimized": "658327ea-f89d-4fab-a63d-7e88639e58f6",
    "CachingOptimizedForUncompressedObjects": "b2884449-e4de-46a7-ac36-70bc7f1ddd6d",
    "CachingDisabled": "4135ea2d-6df8-44a3-9df3-4b5a84be39ad",
    "UseOriginCacheControlHeaders": "83da9c7e-98b4-4e11-a168-04f0df8e2c65",
    "UseOriginCacheControlHeaders-QueryStrings": "4cc15a8a-d715-48a4-82b8-cc0b614638fe",
    "Elemental-MediaPackage": "08627262-05a9-4f76-9ded-b50ca2e3a84f",
    "Amplify": "2e54312d-136d-493c-8eb9-b001f22f67d2",
}
"""AWS's managed cache policies: their ids are fixed and published, so naming one needs no API
call (and no permission)."""

_POLICY_NAMES = {v: k for k, v in MANAGED_CACHE_POLICIES.items()}
ORIGIN_ID = "awsd-origin"
MISSING = frozenset({"NoSuchDistribution", "NoSuchOriginAccessControl"})
_S3_DOMAIN = re.compile(r"^(?P<bucket>.+)\.s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com$")
_ACM_US_EAST_1 = re.compile(r"^arn:aws[\w-]*:acm:us-east-1:\d{12}:certificate/[\w-]+$")


class OriginConfig(Section):
    """Where CloudFront fetches from: set exactly one of `bucket` and `host`."""

    bucket: str | None = None
    """A declared bucket's logical name (kept private: awsd creates an origin access control and
    the bucket policy statement that lets only this distribution read), or the name of a bucket
    awsd does not manage (its policy is then yours to write)."""

    host: str | None = Field(default=None, min_length=1, max_length=253)
    """A custom origin's host name (`status.example.com`). A declared load balancer will be
    named here too once load balancers are a resource kind."""

    path: str = Field(default="", max_length=255)
    """A path prefix added to every request to the origin (`/site`), no trailing slash."""

    protocol: Literal["https-only", "http-only", "match-viewer"] = "https-only"
    """Custom origins: how CloudFront connects to the host."""

    http_port: int = Field(default=80, ge=1, le=65535)
    """Custom origins: the HTTP port."""

    https_port: int = Field(default=443, ge=1, le=65535)
    """Custom origins: the HTTPS port."""

    @model_validator(mode="after")
    def _one_origin(self) -> OriginConfig:
        if (self.bucket is None) == (self.host is None):
            raise ValueError("set exactly one of `bucket` and `host`")
        if self.path and (not self.path.startswith("/") or self.path.endswith("/")):
            raise ValueError("path must start with '/' and not end with one (`/site`)")
        return self


class ErrorResponse(Section):
    """What viewers get for an error status from the origin."""

    code: int = Field(ge=400, le=599)
    """The origin's status code (404, 403, 500, ...)."""

    page: str | None = Field(default=None, pattern=r"^/")
    """Path of the page returned instead (`/404.html`); unset: CloudFront's own."""

    response_code: int | None = Field(default=None, ge=200, le=599)
    """Status returned with the page (200 for single-page apps); unset: `code`."""

    ttl: int = Field(default=10, ge=0, le=31536000)
    """Seconds CloudFront caches the error."""

    @model_validator(mode="after")
    def _page_with_code(self) -> ErrorResponse:
        if self.response_code is not None and self.page is None:
            raise ValueError("response_code needs a page")
        return self


class DistributionConfig(ResourceBase):
    """A CloudFront distribution in front of one origin."""

    origin: OriginConfig
    """The origin: `{ bucket = "site" }` or `{ host = "status.example.com" }`."""

    enabled: bool = True
    """Serve requests. Pruning disables a distribution before deleting it."""

    comment: str = Field(default="", max_length=128)
    """Free text shown in the console."""

    default_root_object: str | None = Field(default=None, max_length=255)
    """Object returned for `/` (`index.html`)."""

    viewer_protocol: Literal["redirect-to-https", "https-only", "allow-all"] = "redirect-to-https"
    """What viewers may use: HTTP requests are redirected to HTTPS by default."""

    price_class: Literal["PriceClass_100", "PriceClass_200", "PriceClass_All"] = "PriceClass_100"
    """Edge locations used: 100 (North America, Europe: cheapest), 200, or All."""

    cache_policy: Literal[
        "CachingOptimized",
        "CachingOptimizedForUncompressedObjects",
        "CachingDisabled",
        "UseOriginCacheControlHeaders",
        "UseOriginCacheControlHeaders-QueryStrings",
        "Elemental-MediaPackage",
        "Amplify",
    ] = "CachingOptimized"
    """A managed cache policy, by name."""

    compress: bool = True
    """Compress responses (gzip, brotli) for viewers that accept it."""

    aliases: list[str] = Field(default_factory=list)
    """Alternate domain names (`status.example.com`); they need `certificate`."""

    certificate: str | None = None
    """ACM certificate ARN covering the aliases (it must be in us-east-1)."""

    minimum_protocol_version: Literal["TLSv1.2_2021", "TLSv1.2_2019", "TLSv1.2_2018"] = (
        "TLSv1.2_2021"
    )
    """Oldest TLS viewers may use with `certificate`."""

    error_responses: list[ErrorResponse] = Field(default_factory=list)
    """Custom error responses (an empty list removes them)."""

    @model_validator(mode="after")
    def _consistent(self) -> DistributionConfig:
        if self.aliases and self.certificate is None:
            raise ValueError("aliases need a `certificate` (an ACM certificate ARN in us-east-1)")
        if self.certificate is not None and not _ACM_US_EAST_1.match(self.certificate):
            raise ValueError(
                "certificate must be an ACM certificate ARN in us-east-1 (CloudFront takes "
                "certificates from that region only)"
            )
        codes = [r.code for r in self.error_responses]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate error_responses codes: {', '.join(map(str, dupes))}")
        return self


Call = Callable[..., Awaitable[dict[str, Any]]]
"""`call(service, operation, **params)`: `Session.call`, or a client-backed equivalent."""


async def find_distribution(call: Call, caller_reference: str) -> dict[str, Any] | None:
    """The distribution whose CallerReference is `caller_reference`: `{"Id", "ARN",
    "DomainName", "Status", "ETag", "DistributionConfig"}`, or None. CloudFront lists no
    CallerReference, so each distribution's config is read until it is found (an account has
    few distributions)."""
    params: dict[str, Any] = {}
    while True:
        page = (await call("cloudfront", "list_distributions", **params)).get(
            "DistributionList", {}
        )
        for summary in page.get("Items", []) or []:
            got = await call("cloudfront", "get_distribution_config", Id=summary["Id"])
            config = got.get("DistributionConfig", {})
            if config.get("CallerReference") == caller_reference:
                return {
                    "Id": summary["Id"],
                    "ARN": summary["ARN"],
                    "DomainName": summary.get("DomainName", ""),
                    "Status": summary.get("Status", ""),
                    "ETag": got.get("ETag"),
                    "DistributionConfig": config,
                }
        if not page.get("IsTruncated"):
            return None
        params["Marker"] = page["NextMarker"]


class DistributionKind(Kind[DistributionConfig]):
    name = "distributions"
    singular = "distribution"
    name_rule = NameRule(
        re.compile(r"^[A-Za-z0-9_.-]{1,64}$"),
        "1-64 letters, digits, '.', '-' or '_' (the CallerReference, and the name of its "
        "origin access control)",
    )
    service = "cloudfront"
    assigns_ids = True
    outputs_after_create = ("domain_name",)
    tag_read_actions = ("cloudfront:ListTagsForResource",)
    read_actions = ("cloudfront:GetDistributionConfig", "cloudfront:ListTagsForResource")
    unscoped_read_actions = (
        "cloudfront:ListDistributions",
        "cloudfront:ListOriginAccessControls",
    )
    write_actions = (
        "cloudfront:CreateDistribution",
        "cloudfront:UpdateDistribution",
        "cloudfront:TagResource",
    )
    unscoped_write_actions = (
        "cloudfront:CreateOriginAccessControl",
        "cloudfront:GetOriginAccessControl",
    )
    delete_actions = (
        "cloudfront:GetDistribution",
        "cloudfront:GetDistributionConfig",
        "cloudfront:UpdateDistribution",
        "cloudfront:DeleteDistribution",
        "cloudfront:DeleteOriginAccessControl",
    )
    list_actions = ("cloudfront:ListDistributions", "cloudfront:ListOriginAccessControls")

    def arn(self, physical: str, ctx: Place) -> str:
        # The id is assigned by AWS: until it is read, the account's distributions.
        return f"arn:{ctx.partition}:cloudfront::{ctx.account}:distribution/*"

    def references(
        self, name: str, spec: DistributionConfig, all_declared: Any
    ) -> list[ResourceRef]:
        bucket = spec.origin.bucket
        if bucket is None or bucket not in all_declared.buckets:
            return []
        path = f"resources.distributions.{name}.origin.bucket"
        return [ResourceRef("buckets", bucket, path, f"distribution.{name}")]

    def desired(self, res: Declared, ctx: Session) -> dict[str, Any]:
        spec = res.spec
        assert isinstance(spec, DistributionConfig)
        origin = spec.origin
        if origin.bucket is not None:
            wanted: dict[str, Any] = {
                "bucket": ctx.physical_of("buckets", origin.bucket),
                "path": origin.path,
                "private": origin.bucket in ctx.config.resources.buckets,
            }
        else:
            wanted = {
                "host": origin.host,
                "path": origin.path,
                "protocol": origin.protocol,
                "http_port": origin.http_port,
                "https_port": origin.https_port,
            }
        out: dict[str, Any] = {
            "origin": wanted,
            "enabled": spec.enabled,
            "comment": spec.comment,
            "default_root_object": spec.default_root_object or "",
            "viewer_protocol": spec.viewer_protocol,
            "price_class": spec.price_class,
            "cache_policy": spec.cache_policy,
            "compress": spec.compress,
            "aliases": sorted(spec.aliases),
            "certificate": spec.certificate,
            "error_responses": [_error_state(r.model_dump()) for r in spec.error_responses],
            "tags": Entries({**spec.tags, **ownership_tags(ctx.env)}),
        }
        if spec.certificate is not None:
            out["minimum_protocol_version"] = spec.minimum_protocol_version
        return out

    def compared(self, res: Declared) -> set[str]:
        fields = super().compared(res) | {"origin"}
        if "certificate" in fields:
            fields.add("minimum_protocol_version")
        return fields

    async def read(self, ctx: Session, res: Declared) -> Observed | None:
        found = await find_distribution(ctx.call, res.physical)
        if found is None:
            return None
        config = found["DistributionConfig"]
        tags = await ctx.call("cloudfront", "list_tags_for_resource", Resource=found["ARN"])
        state = _state(config)
        if state["origin"].get("private") is None:
            # An emulator that drops OriginAccessControlId (moto 5.2) cannot tell: as declared.
            state["origin"]["private"] = self.desired(res, ctx)["origin"].get("private")
        state["tags"] = {t["Key"]: t["Value"] for t in tags.get("Tags", {}).get("Items", [])}
        return Observed(
            state,
            {"id": found["Id"], "etag": found["ETag"], "config": config},
            outputs={
                "id": found["Id"],
                "domain_name": found["DomainName"],
                "status": found["Status"],
            },
            arn=found["ARN"],
        )

    async def _origin_access_control(self, ctx: Session, name: str) -> str:
        """The id of the origin access control named `name`, created when missing."""
        params: dict[str, Any] = {}
        while True:
            page = (await ctx.call("cloudfront", "list_origin_access_controls", **params)).get(
                "OriginAccessControlList", {}
            )
            for item in page.get("Items", []) or []:
                if item.get("Name") == name:
                    return str(item["Id"])
            if not page.get("IsTruncated"):
                break
            params["Marker"] = page["NextMarker"]
        created = await ctx.call(
            "cloudfront",
            "create_origin_access_control",
            OriginAccessControlConfig={
                "Name": name,
                "Description": "awsd: private bucket origin",
                "SigningProtocol": "sigv4",
                "SigningBehavior": "always",
                "OriginAccessControlOriginType": "s3",
            },
        )
        return str(created["OriginAccessControl"]["Id"])

    async def _config(
        self, ctx: Session, res: Declared, desired: dict[str, Any], current: dict[str, Any]
    ) -> dict[str, Any]:
        """`current` (the distribution's whole configuration, or a new one) with the declared
        settings written in."""
        config = copy.deepcopy(current)
        config["CallerReference"] = res.physical
        config["Comment"] = desired["comment"]
        config["Enabled"] = desired["enabled"]
        config["DefaultRootObject"] = desired["default_root_object"]
        config["PriceClass"] = desired["price_class"]
        origin = desired["origin"]
        oac = await self._origin_access_control(ctx, res.physical) if origin.get("private") else ""
        config["Origins"] = {"Quantity": 1, "Items": [_origin(origin, ctx.region, oac)]}
        behaviour = dict(config.get("DefaultCacheBehavior") or {})
        for legacy in ("ForwardedValues", "MinTTL", "DefaultTTL", "MaxTTL"):
            behaviour.pop(legacy, None)  # they conflict with a cache policy
        behaviour.update(
            TargetOriginId=ORIGIN_ID,
            ViewerProtocolPolicy=desired["viewer_protocol"],
            CachePolicyId=MANAGED_CACHE_POLICIES[desired["cache_policy"]],
            Compress=desired["compress"],
        )
        behaviour.setdefault(
            "AllowedMethods",
            {
                "Quantity": 2,
                "Items": ["GET", "HEAD"],
                "CachedMethods": {"Quantity": 2, "Items": ["GET", "HEAD"]},
            },
        )
        config["DefaultCacheBehavior"] = behaviour
        aliases = desired["aliases"]
        config["Aliases"] = {"Quantity": len(aliases), **({"Items": aliases} if aliases else {})}
        if desired.get("certificate"):
            config["ViewerCertificate"] = {
                "ACMCertificateArn": desired["certificate"],
                "SSLSupportMethod": "sni-only",
                "MinimumProtocolVersion": desired.get("minimum_protocol_version", "TLSv1.2_2021"),
            }
        else:
            config["ViewerCertificate"] = {"CloudFrontDefaultCertificate": True}
        errors = [_error_aws(e) for e in desired["error_responses"]]
        config["CustomErrorResponses"] = {
            "Quantity": len(errors),
            **({"Items": errors} if errors else {}),
        }
        return config

    async def create(self, ctx: Session, res: Declared, desired: dict[str, Any]) -> None:
        config = await self._config(ctx, res, desired, {})
        try:
            await ctx.call(
                "cloudfront",
                "create_distribution_with_tags",
                DistributionConfigWithTags={
                    "DistributionConfig": config,
                    "Tags": {"Items": tag_list(dict(desired["tags"]))},
                },
            )
        except Exception as exc:
            # The same CallerReference exists (created since the plan): the applier reads it
            # back and adopts it only when it is untagged or ours.
            if error_code(exc) != "DistributionAlreadyExists":
                raise

    async def update(
        self,
        ctx: Session,
        res: Declared,
        observed: Observed,
        desired: dict[str, Any],
        changed: set[str],
    ) -> None:
        dist_id = observed.handle["id"]
        if changed - {"tags"}:
            got = await ctx.call("cloudfront", "get_distribution_config", Id=dist_id)
            config = await self._config(ctx, res, desired, got["DistributionConfig"])
            await ctx.call(
                "cloudfront",
                "update_distribution",
                Id=dist_id,
                IfMatch=got["ETag"],
                DistributionConfig=config,
            )
        tags = tags_to_set(res, observed, desired)
        if tags:
            await ctx.call(
                "cloudfront",
                "tag_resource",
                Resource=observed.arn,
                Tags={"Items": tag_list(tags)},
            )

    def delete_note(self, found: Found) -> str:
        if found.handle.get("enabled"):
            return (
                "CloudFront deletes only disabled, deployed distributions: this pass disables "
                "it, a later one deletes it"
            )
        if found.handle.get("status") != "Deployed":
            return "disabled; deleted once CloudFront has deployed that (a later pass)"
        return ""

    async def delete(self, ctx: Session, found: Found) -> None:
        dist_id = found.handle.get("id")
        if dist_id is None:
            located = await find_distribution(ctx.call, found.physical)
            if located is None:
                return
            dist_id = located["Id"]
        got = await ctx.call_or_none(MISSING, "cloudfront", "get_distribution_config", Id=dist_id)
        if got is None:
            return
        config = got["DistributionConfig"]
        if config.get("Enabled"):
            config["Enabled"] = False
            await ctx.call(
                "cloudfront",
                "update_distribution",
                Id=dist_id,
                IfMatch=got["ETag"],
                DistributionConfig=config,
            )
            raise DeletePending("disabled; CloudFront deletes it once that is deployed")
        status = (await ctx.call("cloudfront", "get_distribution", Id=dist_id))["Distribution"]
        if status.get("Status") != "Deployed":
            raise DeletePending("disabled, not yet deployed; a later pass deletes it")
        await ctx.call_or_none(
            MISSING, "cloudfront", "delete_distribution", Id=dist_id, IfMatch=got["ETag"]
        )
        await self._delete_origin_access_control(ctx, found.physical)

    async def _delete_origin_access_control(self, ctx: Session, name: str) -> None:
        page = (await ctx.call("cloudfront", "list_origin_access_controls")).get(
            "OriginAccessControlList", {}
        )
        for item in page.get("Items", []) or []:
            if item.get("Name") != name:
                continue
            got = await ctx.call_or_none(
                MISSING, "cloudfront", "get_origin_access_control", Id=item["Id"]
            )
            if got is not None:
                await ctx.call_or_none(
                    MISSING | frozenset({"OriginAccessControlInUse"}),
                    "cloudfront",
                    "delete_origin_access_control",
                    Id=item["Id"],
                    IfMatch=got.get("ETag", ""),
                )

    async def discover(self, ctx: Session) -> list[Found]:
        owned: list[Found] = []
        params: dict[str, Any] = {}
        while True:
            page = (await ctx.call("cloudfront", "list_distributions", **params)).get(
                "DistributionList", {}
            )
            for summary in page.get("Items", []) or []:
                tags = await ctx.call_or_none(
                    MISSING | ACCESS_DENIED,
                    "cloudfront",
                    "list_tags_for_resource",
                    Resource=summary["ARN"],
                )
                found_tags = {
                    t["Key"]: t["Value"] for t in (tags or {}).get("Tags", {}).get("Items", [])
                }
                if not owned_by(found_tags, ctx.env):
                    continue
                got = await ctx.call("cloudfront", "get_distribution_config", Id=summary["Id"])
                config = got["DistributionConfig"]
                handle = {
                    "id": summary["Id"],
                    "enabled": bool(config.get("Enabled")),
                    "status": summary.get("Status"),
                }
                owned.append(
                    Found(
                        "distributions",
                        config["CallerReference"],
                        summary["ARN"],
                        found_tags,
                        handle,
                    )
                )
            if not page.get("IsTruncated"):
                return owned
            params["Marker"] = page["NextMarker"]

    def found(self, res: Declared, observed: Observed) -> Found:
        found = super().found(res, observed)
        config = observed.handle.get("config", {})
        found.handle.update(
            enabled=bool(config.get("Enabled")), status=observed.outputs.get("status")
        )
        return found


def _origin(origin: dict[str, Any], region: str, oac: str) -> dict[str, Any]:
    out: dict[str, Any] = {"Id": ORIGIN_ID, "OriginPath": origin.get("path", "")}
    if "bucket" in origin:
        out["DomainName"] = f"{origin['bucket']}.s3.{region}.amazonaws.com"
        out["S3OriginConfig"] = {"OriginAccessIdentity": ""}
        out["OriginAccessControlId"] = oac
        return out
    out["DomainName"] = origin["host"]
    out["CustomOriginConfig"] = {
        "HTTPPort": origin["http_port"],
        "HTTPSPort": origin["https_port"],
        "OriginProtocolPolicy": origin["protocol"],
        "OriginSslProtocols": {"Quantity": 1, "Items": ["TLSv1.2"]},
        "OriginReadTimeout": 30,
        "OriginKeepaliveTimeout": 5,
    }
    return out


def _error_state(response: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": response["code"],
        "page": response.get("page") or "",
        "response_code": response.get("response_code")
        or (response["code"] if response.get("page") else None),
        "ttl": response.get("ttl", 10),
    }


def _error_aws(response: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ErrorCode": response["code"], "ErrorCachingMinTTL": response["ttl"]}
    if response.get("page"):
        out["ResponsePagePath"] = response["page"]
        out["ResponseCode"] = str(response["response_code"])
    return out


def _origin_state(origin: dict[str, Any]) -> dict[str, Any]:
    domain = str(origin.get("DomainName", ""))
    path = origin.get("OriginPath", "") or ""
    match = _S3_DOMAIN.match(domain)
    if match and "CustomOriginConfig" not in origin:
        # None when the field is not reported at all: `read` then cannot judge it.
        oac = origin.get("OriginAccessControlId")
        return {
            "bucket": match["bucket"],
            "path": path,
            "private": bool(oac) if oac is not None else None,
        }
    custom = origin.get("CustomOriginConfig") or {}
    return {
        "host": domain,
        "path": path,
        "protocol": custom.get("OriginProtocolPolicy"),
        "http_port": custom.get("HTTPPort"),
        "https_port": custom.get("HTTPSPort"),
    }


def _state(config: dict[str, Any]) -> dict[str, Any]:
    """A distribution's configuration in the config's vocabulary."""
    origins = (config.get("Origins") or {}).get("Items") or []
    behaviour = config.get("DefaultCacheBehavior") or {}
    target = behaviour.get("TargetOriginId")
    origin = next((o for o in origins if o.get("Id") == target), origins[0] if origins else {})
    viewer = config.get("ViewerCertificate") or {}
    policy = behaviour.get("CachePolicyId")
    errors = []
    for item in (config.get("CustomErrorResponses") or {}).get("Items") or []:
        code = item.get("ResponseCode")
        errors.append(
            {
                "code": int(item["ErrorCode"]),
                "page": item.get("ResponsePagePath") or "",
                "response_code": int(code) if code else None,
                "ttl": item.get("ErrorCachingMinTTL", 10),
            }
        )
    return {
        "origin": _origin_state(origin),
        "enabled": bool(config.get("Enabled")),
        "comment": config.get("Comment", ""),
        "default_root_object": config.get("DefaultRootObject", "") or "",
        "viewer_protocol": behaviour.get("ViewerProtocolPolicy"),
        "price_class": config.get("PriceClass"),
        "cache_policy": _POLICY_NAMES.get(str(policy), policy),
        "compress": bool(behaviour.get("Compress")),
        "aliases": sorted((config.get("Aliases") or {}).get("Items") or []),
        "certificate": viewer.get("ACMCertificateArn") or None,
        "minimum_protocol_version": viewer.get("MinimumProtocolVersion"),
        "error_responses": errors,
    }


DISTRIBUTIONS = DistributionKind(DistributionConfig)
