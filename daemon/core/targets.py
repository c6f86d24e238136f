"""What a topic, queue, stream, bucket or table named in the config stands for in AWS.

The one resolver from a logical name to an AWS name to an ARN, used by the workers and senders
(at run time, `Targets`), the reconciler and the IAM policy generator (`Names`, where the region
and account may be known or `*`), so a worker calls exactly what the reconciler created and the
policy grants.

- A declared resource's logical name (`[resources.topics.readings]`) becomes its AWS name (its
  own `name`, else `resources.name_template`, with the kind's suffix such as `.fifo`) and the ARN
  of its kind (`daemon/resources/<kind>.py`).
- An ARN stays an ARN, except that a bucket or table ARN gives the bucket or table name S3 and
  DynamoDB calls take; a queue URL stays a URL.
- Anything else is taken as the AWS name itself: configs loaded from files hold one only as a
  Kinesis reader's own lease table (`check-config` refuses other undeclared names), but ingest
  (`awsd publish --topic`, PublishRequest events) may name a topic awsd does not declare.

Resolution needs no API call unless a name template or an ARN needs the account: then STS
GetCallerIdentity (which needs no permission), once per config; a reload builds new services, and
a new `Targets` with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.config.models import Config
from daemon.config.resources import KIND
from daemon.resources.kind import Declared

if TYPE_CHECKING:
    from daemon.core.aws import AwsClients


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

    def declared(self, kind: str, logical: str) -> Declared:
        """A declared resource by kind and logical name."""
        res = self.config.resources
        spec = res.of_kind(kind)[logical]
        physical = res.physical_name(
            kind, logical, env=self.env, region=self.region, account=self.account
        )
        of = KIND[kind]
        return Declared(kind, logical, spec, physical, of.arn(physical, self), of.singular)

    def arn_of(self, kind: str, ref: str) -> str:
        """The ARN a reference stands for: a declared logical name, or an external ARN or URL
        (a name awsd does not declare is taken as the AWS name)."""
        if ref.startswith("arn:"):
            return ref
        if kind == "queues" and ref.startswith(("https://", "http://")):
            name = ref.rstrip("/").rsplit("/", 2)
            return f"arn:{self.partition}:sqs:{self.region}:{name[-2]}:{name[-1]}"
        if ref not in self.config.resources.of_kind(kind):
            return KIND[kind].arn(ref, self)
        return self.declared(kind, ref).arn

    def physical_of(self, kind: str, ref: str) -> str:
        """The AWS name a reference stands for."""
        if ref.startswith("arn:"):
            resource = ref.split(":", 5)[5]
            if resource.startswith("function:"):  # Lambda: function:NAME[:QUALIFIER]
                return resource.split(":")[1]
            return resource.rsplit("/", 1)[-1]
        if ref not in self.config.resources.of_kind(kind):
            return ref
        return self.declared(kind, ref).physical


class Targets:
    """Resolves references for one config at run time (region and account looked up once)."""

    def __init__(self, config: Config, clients: AwsClients) -> None:
        self.config = config
        self.clients = clients
        self._cache: dict[tuple[str, str], str] = {}
        self._account: str | None = None
        self._names: Names | None = None

    async def aws_name(self, kind: str, ref: str) -> str:
        """The AWS name (or the ARN / URL as given; a bucket's or table's name for its ARN)."""
        if ref.startswith("arn:"):
            if kind == "buckets":
                return ref.split(":", 5)[5]
            if kind == "tables":  # arn:...:table/NAME: the name every DynamoDB call takes
                resource = ref.split(":", 5)[5]
                return resource.split("/")[1] if "/" in resource else resource
            return ref
        if kind == "queues" and ref.startswith(("https://", "http://")):
            return ref
        found = self._cache.get((kind, ref))
        if found is not None:
            return found
        declared = self.config.resources.of_kind(kind)
        if ref not in declared:
            return ref  # the AWS name of something awsd does not declare
        template = declared[ref].name or self.config.resources.name_template
        region = await self.clients.resolve_region()
        account = await self.account() if "{account}" in template else "*"
        name = self.config.resources.physical_name(
            kind, ref, env=self.config.env, region=region, account=account
        )
        self._cache[(kind, ref)] = name
        return name

    async def arn(self, kind: str, ref: str) -> str:
        """The ARN of a reference (a declared logical name, or an ARN as given)."""
        if ref.startswith("arn:"):
            return ref
        return (await self.names()).arn_of(kind, ref)

    async def arn_for(self, kind: str, aws_name: str) -> str:
        """The ARN of a resource by its AWS name (what the outbox holds), or an ARN as given."""
        if aws_name.startswith("arn:"):
            return aws_name
        return KIND[kind].arn(aws_name, await self.names())

    async def names(self) -> Names:
        """Names and ARNs in this config's region and account."""
        if self._names is None:
            region = await self.clients.resolve_region()
            self._names = Names(self.config, region=region, account=await self.account())
        return self._names

    async def account(self) -> str:
        """The account id of the credentials (STS GetCallerIdentity, once)."""
        if self._account is None:
            sts = await self.clients.client("sts")
            self._account = str((await sts.get_caller_identity())["Account"])
        return self._account
