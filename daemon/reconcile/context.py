"""One plan-or-apply session: the config, the AWS clients, the region and account, call limits.

Every AWS call a resource kind makes goes through `Context.call`, which holds a per-service
concurrency limit and backs off with jitter when AWS throttles, on top of botocore's own retries;
`Context` is the `Session` of `daemon.resources.kind`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from daemon.base.awserrors import IAM_HINT, describe_error, error_code, http_status, is_throttle
from daemon.base.retry import Backoff, retry
from daemon.base.stop import StopToken
from daemon.config.models import Config
from daemon.core.aws import AwsClients
from daemon.core.targets import Names, Targets
from daemon.resources.kind import ResourceFailed, ResourceRef

THROTTLE_BACKOFF = Backoff(initial=0.5, maximum=10.0)
THROTTLE_ATTEMPTS = 6
POLL_BACKOFF = Backoff(initial=0.1, maximum=5.0)


class Context(Names):
    """One plan-or-apply session: the config, AWS clients, region and account, call limits."""

    def __init__(
        self,
        config: Config,
        clients: AwsClients,
        *,
        stop: StopToken | None = None,
        wait: Callable[[float], Awaitable[bool]] | None = None,
        used: Sequence[ResourceRef] = (),
        targets: Targets | None = None,
    ) -> None:
        super().__init__(config, region=config.aws.region or "*")
        self.clients = clients
        self.targets = targets or Targets(config, clients)
        self.references = (*config.resources.references(), *used)
        """Every resource reference of the config: between resources, and `used` by the workers
        (`daemon.worker.Catalog.worker_references`). Plans show who uses a resource, apply
        orders by them, and pruning never deletes what is named by ARN."""
        self.stop = stop
        self.wait = wait or self._wait
        """Waits the applier makes for AWS's own timing (QueueDeletedRecently); injectable so
        tests check the decision without waiting a minute. Returns False when stopped."""
        self._limits: dict[str, asyncio.Semaphore] = {}
        self.assigned: dict[tuple[str, str], str] = {}
        """ARNs read from AWS of declared resources whose ARN holds an id AWS assigned
        (`Kind.assigns_ids`), by (kind, logical name): what `arn_of` gives for them."""

    def arn_of(self, kind: str, ref: str) -> str:
        known = self.assigned.get((kind, ref))
        return known if known is not None else super().arn_of(kind, ref)

    def learn(self, kind: str, name: str, arn: str | None) -> bool:
        """Remember the ARN AWS reports for a declared resource; True when it is new."""
        if arn is None or self.assigned.get((kind, name)) == arn:
            return False
        self.assigned[(kind, name)] = arn
        return True

    async def start(self) -> None:
        """Resolve the region and the account id (ARNs need both), through the config's one
        resolver (`daemon.core.targets`)."""
        names = await self.targets.names()
        self.region, self.account, self.partition = names.region, names.account, names.partition

    async def _wait(self, seconds: float) -> bool:
        if self.stop is not None:
            return await self.stop.sleep(seconds)
        await asyncio.sleep(seconds)
        return True

    async def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """One AWS API call, within the service's concurrency limit, retried when throttled."""
        limit = self._limits.get(service)
        if limit is None:
            limit = self._limits[service] = asyncio.Semaphore(self.config.resources.concurrency)
        client = await self.clients.client(service)

        async def once() -> dict[str, Any]:
            async with limit:
                response: dict[str, Any] = await getattr(client, operation)(**params)
            response.pop("ResponseMetadata", None)
            return response

        return await retry(
            once,
            retry_if=is_throttle,
            backoff=THROTTLE_BACKOFF,
            attempts=THROTTLE_ATTEMPTS,
            stop=self.stop,
        )

    async def call_or_none(
        self, missing: frozenset[str], service: str, operation: str, **params: Any
    ) -> dict[str, Any] | None:
        """Like `call`, but None when AWS answers with one of the `missing` error codes."""
        try:
            return await self.call(service, operation, **params)
        except Exception as exc:
            if error_code(exc) in missing:
                return None
            raise

    async def poll(self, check: Callable[[], Awaitable[bool]], *, what: str, budget: float) -> None:
        """Re-check with backoff until `check()` is true (AWS finishing a change); ResourceFailed
        after `budget` seconds."""

        async def once() -> None:
            if not await check():
                raise _NotYet

        try:
            await retry(
                once,
                retry_if=lambda e: isinstance(e, _NotYet),
                backoff=POLL_BACKOFF,
                budget=budget,
                stop=self.stop,
            )
        except _NotYet:
            raise ResourceFailed(f"{what} did not happen within {budget:g}s") from None


class _NotYet(Exception):
    pass


def explain(exc: BaseException) -> str:
    """One line for people: what failed and, for a permission error, what to do about it."""
    if isinstance(exc, ResourceFailed):
        return str(exc)
    text = describe_error(exc)  # names the missing permission for AccessDenied & co.
    if http_status(exc) == 403 and IAM_HINT not in text:
        text += f" {IAM_HINT}"
    return text
