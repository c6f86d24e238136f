"""What every resource adapter implements, and the context it works in.

An adapter knows one kind of AWS resource: how to name it in an ARN, what the config declares in
the config's own vocabulary (`desired`), how to read the same shape back from AWS (`read`), and
how to create, update and delete it. Planning, ordering, ownership, convergence and throttling
are not its business: `plan.py` and `apply.py` do those the same way for every kind.

Every AWS call goes through `Context.call`, which holds a per-service concurrency limit and backs
off with jitter when AWS throttles, on top of botocore's own retries.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from daemon.base.retry import Backoff, retry
from daemon.base.stop import StopToken
from daemon.config.models import Config
from daemon.config.resources import ResourceKind
from daemon.core.aws import (
    ACCESS_DENIED_CODES,
    IAM_HINT,
    AwsClients,
    describe_error,
    error_code,
    http_status,
    is_throttle,
)
from daemon.resources.diff import is_ignored, join
from daemon.resources.naming import Declared, Names, partition_of

OWNER_TAG = "managed-by"
OWNER_VALUE = "awsd"
ENV_TAG = "awsd:env"

THROTTLE_BACKOFF = Backoff(initial=0.5, maximum=10.0)
THROTTLE_ATTEMPTS = 6
POLL_BACKOFF = Backoff(initial=0.1, maximum=5.0)

ACCESS_DENIED = ACCESS_DENIED_CODES


class RetryAfter(Exception):
    """AWS refuses the operation for a known time (a queue deleted less than 60 s ago)."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds
        self.reason = reason


class ResourceFailed(Exception):
    """An operation on a resource cannot succeed as things stand (a clear reason for people)."""


@dataclass(frozen=True, slots=True)
class Observed:
    """A resource as read from AWS: `state` in the config's vocabulary (with `tags`), and the
    adapter's own handles (a queue URL, subscription ARNs) for later calls."""

    state: dict[str, Any]
    handle: dict[str, Any] = field(default_factory=dict)

    @property
    def tags(self) -> dict[str, str]:
        tags = self.state.get("tags")
        return dict(tags) if isinstance(tags, dict) else {}


@dataclass(frozen=True, slots=True)
class Found:
    """A resource found while listing an account (for pruning): name, ARN and tags."""

    kind: ResourceKind
    physical: str
    arn: str
    tags: dict[str, str]
    handle: dict[str, Any] = field(default_factory=dict)


def owned_by(tags: dict[str, str], env: str) -> bool:
    return tags.get(OWNER_TAG) == OWNER_VALUE and tags.get(ENV_TAG) == env


def ownership_tags(env: str) -> dict[str, str]:
    return {OWNER_TAG: OWNER_VALUE, ENV_TAG: env}


class Context(Names):
    """One plan-or-apply session: the config, AWS clients, region and account, call limits."""

    def __init__(
        self,
        config: Config,
        clients: AwsClients,
        *,
        stop: StopToken | None = None,
        wait: Callable[[float], Awaitable[bool]] | None = None,
    ) -> None:
        super().__init__(config, region=config.aws.region or "*")
        self.clients = clients
        self.stop = stop
        self.wait = wait or self._wait
        """Waits the applier makes for AWS's own timing (QueueDeletedRecently); injectable so
        tests check the decision without waiting a minute. Returns False when stopped."""
        self._limits: dict[str, asyncio.Semaphore] = {}

    async def start(self) -> None:
        """Resolve the region and the account id (ARNs need both)."""
        self.region = await self.clients.resolve_region()
        self.partition = partition_of(self.region)
        identity = await self.call("sts", "get_caller_identity")
        self.account = str(identity["Account"])

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


class Adapter(abc.ABC):
    """One kind of AWS resource (see the module docstring)."""

    kind: ClassVar[ResourceKind]
    service: ClassVar[str]
    """The AWS service (client name)."""

    replace_paths: ClassVar[frozenset[str]] = frozenset()
    """Attributes that cannot change in place: a difference there means replacing the resource."""

    always_compared: ClassVar[frozenset[str]] = frozenset({"tags"})
    """Attributes compared even when the config did not write them (generated ones)."""

    # IAM actions this adapter's calls need; `daemon.reconcile.iam` turns them into grants.
    read_actions: ClassVar[tuple[str, ...]] = ()
    unscoped_read_actions: ClassVar[tuple[str, ...]] = ()
    """Read actions AWS cannot scope to a resource ARN (they get `*`)."""
    tag_read_actions: ClassVar[tuple[str, ...]] = ()
    """Reading a resource's tags, which pruning does for every resource it lists."""
    write_actions: ClassVar[tuple[str, ...]] = ()
    delete_actions: ClassVar[tuple[str, ...]] = ()
    list_actions: ClassVar[tuple[str, ...]] = ()
    """Listing the account for pruning: not scoped to resources by AWS."""
    unscoped_write_actions: ClassVar[tuple[str, ...]] = ()
    """Write actions AWS cannot scope to a resource ARN (they get `*`)."""

    @abc.abstractmethod
    def arn(self, physical: str, names: Names) -> str:
        """The ARN of the resource named `physical` (partition, region, account from `names`)."""

    def arn_patterns(self, physical: str, names: Names) -> list[str]:
        """ARNs an IAM policy names for this resource (sub-resources included)."""
        return [self.arn(physical, names)]

    @abc.abstractmethod
    def desired(self, res: Declared, ctx: Context) -> dict[str, Any]:
        """Everything the config implies, in the config's vocabulary, normalised like `read`."""

    def compared(self, res: Declared) -> set[str]:
        """The attributes drift is judged on: those the file wrote, and generated ones."""
        return res.spec.declared() | set(self.always_compared)

    @abc.abstractmethod
    async def read(self, ctx: Context, res: Declared) -> Observed | None:
        """The resource as it is, or None when it does not exist."""

    @abc.abstractmethod
    async def create(self, ctx: Context, res: Declared, desired: dict[str, Any]) -> None:
        """Create it with as much of `desired` as the create call takes (the applier then
        updates whatever differs). Raise RetryAfter when AWS asks to wait."""

    @abc.abstractmethod
    async def update(
        self,
        ctx: Context,
        res: Declared,
        observed: Observed,
        desired: dict[str, Any],
        changed: set[str],
    ) -> None:
        """Bring the `changed` top-level attributes to their desired values."""

    @abc.abstractmethod
    async def delete(self, ctx: Context, found: Found) -> None:
        """Delete a resource (ownership was checked by the caller)."""

    @abc.abstractmethod
    async def discover(self, ctx: Context) -> list[Found]:
        """Resources of this kind owned by awsd in this environment (for pruning)."""

    def found(self, res: Declared, observed: Observed) -> Found:
        """The Found form of a declared resource, for replacing it."""
        return Found(res.kind, res.physical, res.arn, observed.tags, dict(observed.handle))


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    """`{"k": "v"}` -> `[{"Key": "k", "Value": "v"}]` (SNS, CloudWatch, DynamoDB)."""
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def tags_to_set(res: Declared, observed: Observed, desired: dict[str, Any]) -> dict[str, str]:
    """Declared tags whose value differs on the AWS side and are not ignored (only these are
    written; tags someone else added stay)."""
    want: dict[str, str] = dict(desired.get("tags", {}))
    have = observed.tags
    return {
        k: v
        for k, v in want.items()
        if have.get(k) != v and not is_ignored(join("tags", k), res.spec.ignore)
    }


async def poll(
    ctx: Context, check: Callable[[], Awaitable[bool]], *, what: str, budget: float
) -> None:
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
            stop=ctx.stop,
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
