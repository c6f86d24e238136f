"""What a topic or queue named in the config stands for in AWS.

Workers name topics and queues by the logical name of a declared resource (`[resources.topics.
readings]`, turned into its AWS name by `resources.name_template`), by ARN, or for queues by
URL. Ingest (`awsd publish --topic`, PublishRequest events) may also give the AWS name of a topic
awsd does not declare; that is passed on as it is. Resolution needs no API call unless the name
template uses `{account}` (then STS GetCallerIdentity, once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from daemon.services import Services

Kind = Literal["topics", "queues", "streams"]


class Targets:
    """Resolves references for one config (cached: a reload builds new services, and a new
    `Targets` with them)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._cache: dict[tuple[Kind, str], str] = {}
        self._account: str | None = None

    async def aws_name(self, kind: Kind, ref: str) -> str:
        """The AWS name (or the ARN / URL as given) for `ref`."""
        if ref.startswith(("arn:", "https://", "http://")):
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
