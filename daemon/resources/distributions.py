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

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from daemon.base.awserrors import error_code
from daemon.base.fields import Section
from daemon.resources.diff import Entries
from daemon.resources.distribution_config import (
    error_state,
    find_distribution,
    read_config,
    write_config,
)
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

MISSING = frozenset({"NoSuchDistribution", "NoSuchOriginAccessControl"})
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

    def arn_patterns(self, physical: str, ctx: Place) -> list[str]:
        # Ids are assigned by AWS: the account's distributions and origin access controls.
        base = f"arn:{ctx.partition}:cloudfront::{ctx.account}"
        return [f"{base}:distribution/*", f"{base}:origin-access-control/*"]

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
            "error_responses": [error_state(r.model_dump()) for r in spec.error_responses],
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
        state = read_config(config)
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
        """`current` (the whole configuration, or {} for a new one) with the declared settings
        written in, and the origin access control made when the origin is a private bucket."""
        private = desired["origin"].get("private")
        oac = await self._origin_access_control(ctx, res.physical) if private else ""
        return write_config(current, res.physical, desired, ctx.region, oac)

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


DISTRIBUTIONS = DistributionKind(DistributionConfig)
