"""How CloudFront returns and takes a distribution's configuration: the whole
`DistributionConfig` structure on one side, the config's vocabulary (`origin`, `comment`,
`error_responses`, ...) on the other, and finding a distribution by its CallerReference.
`distributions.py` decides what to compare and write.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Awaitable, Callable
from typing import Any

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
_S3_DOMAIN = re.compile(r"^(?P<bucket>.+)\.s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com$")


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


def write_config(
    current: dict[str, Any],
    caller_reference: str,
    desired: dict[str, Any],
    region: str,
    oac: str,
) -> dict[str, Any]:
    """`current` (a distribution's whole configuration, or {} for a new one) with the declared
    settings written in; what the config does not declare stays as it is."""
    config = copy.deepcopy(current)
    config["CallerReference"] = caller_reference
    config["Comment"] = desired["comment"]
    config["Enabled"] = desired["enabled"]
    config["DefaultRootObject"] = desired["default_root_object"]
    config["PriceClass"] = desired["price_class"]
    config["Origins"] = {"Quantity": 1, "Items": [_origin(desired["origin"], region, oac)]}
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


def error_state(response: dict[str, Any]) -> dict[str, Any]:
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


def read_config(config: dict[str, Any]) -> dict[str, Any]:
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
