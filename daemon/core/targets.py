"""What a topic, queue, stream, bucket or table named in the config stands for in AWS, at run time.

The one way awsd resolves resource references (the publisher, the pollers, forward handlers, the
Kinesis reader and its archive, probe alerts, custom workers): a declared resource's logical name
(`[resources.topics.readings]`) becomes its AWS name (its own `name`, else
`resources.name_template`); an ARN stays an ARN, except a bucket or table ARN, which becomes the
bucket or table name S3 and DynamoDB calls take; a queue URL stays a URL. Anything else is taken
as the AWS name itself: configs loaded from files hold one only as a Kinesis reader's own lease
table (`check-config` refuses other undeclared names), but ingest (`awsd publish --topic`,
PublishRequest events) may name a topic awsd does not declare.

Resolution needs no API call unless the name template uses `{account}` (then STS
GetCallerIdentity, which needs no permission, once), and is cached: a reload builds new services,
and a new `Targets` with them. The naming rule itself is `ResourcesConfig.physical_name`, which
the reconciler and the IAM policy generator use too (`daemon/resources/naming.py`), so a worker
calls exactly what the reconciler created and the policy grants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from daemon.services import Services

Kind = Literal["topics", "queues", "streams", "buckets", "tables"]


class Targets:
    """Resolves references for one config."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._cache: dict[tuple[Kind, str], str] = {}
        self._account: str | None = None

    async def aws_name(self, kind: Kind, ref: str) -> str:
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
        config = self.services.config
        declared = config.resources.of_kind(kind)
        if ref not in declared:
            return ref  # the AWS name of something awsd does not declare
        template = declared[ref].name or config.resources.name_template
        region = await self.services.clients.resolve_region()
        account = await self._account_id() if "{account}" in template else "*"
        name = config.resources.physical_name(
            kind, ref, env=config.env, region=region, account=account
        )
        self._cache[(kind, ref)] = name
        return name

    async def _account_id(self) -> str:
        if self._account is None:
            sts = await self.services.clients.client("sts")
            self._account = str((await sts.get_caller_identity())["Account"])
        return self._account
