"""Physical names and ARNs: what a logical name or a reference stands for in one account.

Shared by planning (with the account and region of the session) and by the IAM policy generator
(offline: the account may be unknown, then `*`), so both name exactly the same ARNs.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.config.models import Config
from daemon.config.resources import SINGULAR, ResourceBase, ResourceKind


@dataclass(frozen=True, slots=True)
class Declared:
    """A declared resource with its names resolved."""

    kind: ResourceKind
    name: str
    """Logical name (the config key)."""
    spec: ResourceBase
    physical: str
    """Name in AWS."""
    arn: str

    @property
    def address(self) -> str:
        return f"{SINGULAR[self.kind]}.{self.name}"


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


class Names:
    """Names and ARNs in one partition, region and account (`*` where unknown)."""

    def __init__(self, config: Config, *, region: str = "*", account: str = "*") -> None:
        self.config = config
        self.env = config.env
        self.region = region
        self.account = account
        self.partition = partition_of(region)

    def declared(self, kind: ResourceKind, logical: str) -> Declared:
        """A declared resource by kind and logical name."""
        from daemon.resources.adapters import ADAPTERS  # noqa: PLC0415 - the registry imports adapters

        res = self.config.resources
        spec = res.of_kind(kind)[logical]
        physical = res.physical_name(
            kind, logical, env=self.env, region=self.region, account=self.account
        )
        return Declared(kind, logical, spec, physical, ADAPTERS[kind].arn(physical, self))

    def arn_of(self, kind: ResourceKind, ref: str) -> str:
        """The ARN a reference stands for: a declared logical name, or an external ARN or URL."""
        if ref.startswith("arn:"):
            return ref
        if kind == "queues" and ref.startswith(("https://", "http://")):
            name = ref.rstrip("/").rsplit("/", 2)
            return f"arn:{self.partition}:sqs:{self.region}:{name[-2]}:{name[-1]}"
        if kind == "buckets" and ref not in self.config.resources.buckets:
            return f"arn:{self.partition}:s3:::{ref}"
        return self.declared(kind, ref).arn

    def physical_of(self, kind: ResourceKind, ref: str) -> str:
        """The AWS name a reference stands for."""
        if ref.startswith("arn:"):
            return ref.split(":", 5)[5].rsplit("/", 1)[-1]
        if kind == "buckets" and ref not in self.config.resources.buckets:
            return ref
        return self.declared(kind, ref).physical
