"""What a resource kind is: one module per kind of AWS resource owns all of it.

A kind module (`topics.py`, `queues.py`, ...) holds the config model of `[resources.<kind>.*]`,
the rule AWS applies to its physical names, the form of its ARN, the references it makes to other
declared resources, the checks that need more than one of its fields, the IAM actions its calls
need, and the adapter: what the config implies (`desired`), what AWS has (`read`), and how to
create, update and delete it. Planning, ordering, ownership, convergence and throttling are not a
kind's business: `daemon.reconcile` does those the same way for every kind.

Kinds are listed once, as the fields of `ResourcesConfig` (`daemon/config/resources.py`), in the
order a fresh account is built; every table by kind (names, rules, adapters) is derived from
there. Adding a kind is one module here and one field there.

A kind talks to AWS only through the `Session` it is handed (`daemon.reconcile.context` is the
real one: per-service concurrency limits, throttling backoff), so this package imports nothing
above the config building blocks.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import Field, field_validator, model_validator

from daemon.base.awserrors import ACCESS_DENIED_CODES
from daemon.base.fields import Section
from daemon.resources.diff import is_ignored, join

OWNER_TAG = "managed-by"
OWNER_VALUE = "awsd"
ENV_TAG = "awsd:env"

ACCESS_DENIED = ACCESS_DENIED_CODES


class ResourceBase(Section):
    """Fields every resource kind has."""

    name: str | None = Field(default=None, min_length=1, max_length=512)
    """Physical name in AWS. Placeholders: `{env}`, `{name}` (the logical name), `{region}`,
    `{account}`. Unset: `resources.name_template`."""

    tags: dict[str, str] = Field(default_factory=dict)
    """Tags besides the ownership tags awsd always sets (`managed-by = awsd`, `awsd:env`)."""

    ignore: list[str] = Field(default_factory=list)
    """Attribute paths never compared nor changed, for what another tool owns, for example
    `["tags.CostCenter", "visibility_timeout", "subscriptions"]`."""

    compare_exempt: ClassVar[frozenset[str]] = frozenset({"name", "ignore"})

    @field_validator("tags")
    @classmethod
    def _no_reserved_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for key in tags:
            if key == OWNER_TAG or key.startswith("awsd:"):
                raise ValueError(f"tag {key!r} is reserved: awsd sets its ownership tags itself")
            if not 1 <= len(key) <= 128:
                raise ValueError(f"tag key {key!r} must be 1 to 128 characters")
        return tags

    @model_validator(mode="after")
    def _ignore_paths_exist(self) -> ResourceBase:
        known = set(type(self).model_fields) - self.compare_exempt
        for path in self.ignore:
            head = re.split(r"[.\[]", path, maxsplit=1)[0]
            if head not in known:
                raise ValueError(
                    f"ignore path {path!r} names no attribute of this resource "
                    f"(known: {', '.join(sorted(known))})"
                )
        return self

    def declared(self) -> set[str]:
        """The attributes the file wrote: the only ones the reconciler compares."""
        return set(self.model_fields_set) - self.compare_exempt


M = TypeVar("M", bound=ResourceBase)


@dataclass(frozen=True, slots=True)
class NameRule:
    """What AWS accepts as a physical name of one kind."""

    pattern: re.Pattern[str]
    help: str


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """One use of a resource by a worker or by another resource."""

    kind: str
    """The kind's config table: `queues`, `topics`, ..."""
    value: str
    """The logical name of a declared resource, or an ARN (or queue URL) of an external one."""
    path: str
    """Dotted config path of the field holding the reference, for error messages."""
    user: str
    """Who uses it: a worker name (`sqs:orders`) or a resource (`topic.readings`)."""

    @property
    def external(self) -> bool:
        return is_external(self.kind, self.value)


def is_external(kind: str, value: str) -> bool:
    """An ARN (or an SQS queue URL) names something awsd does not declare."""
    return value.startswith("arn:") or (
        kind == "queues" and value.startswith(("https://", "http://"))
    )


@dataclass(frozen=True, slots=True)
class Declared:
    """A declared resource with its names resolved."""

    kind: str
    name: str
    """Logical name (the config key)."""
    spec: ResourceBase
    physical: str
    """Name in AWS."""
    arn: str
    singular: str = ""
    """The kind's singular (`queue`), for the address."""

    @property
    def address(self) -> str:
        return f"{self.singular or self.kind}.{self.name}"


class RetryAfter(Exception):
    """AWS refuses the operation for a known time (a queue deleted less than 60 s ago)."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds
        self.reason = reason


class ResourceFailed(Exception):
    """An operation on a resource cannot succeed as things stand (a clear reason for people)."""


class DeletePending(Exception):
    """A deletion AWS takes in steps across passes: the first step is done (a CloudFront
    distribution disabled), and a later pass finishes it once AWS allows (deployed)."""


@dataclass(frozen=True, slots=True)
class Observed:
    """A resource as read from AWS: `state` in the config's vocabulary (with `tags`), and the
    adapter's own handles (a queue URL, subscription ARNs) for later calls."""

    state: dict[str, Any]
    handle: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    """What AWS assigned or reports and the config does not say (a file system's DNS name, a
    distribution's domain name and deployment status): shown by `awsd plan`, never compared."""
    arn: str | None = None
    """The ARN as AWS reports it, for kinds whose ARN holds an id AWS assigns (EFS, CloudFront);
    None: `Declared.arn`."""

    @property
    def tags(self) -> dict[str, str]:
        tags = self.state.get("tags")
        return dict(tags) if isinstance(tags, dict) else {}


@dataclass(frozen=True, slots=True)
class Found:
    """A resource found while listing an account (for pruning): name, ARN and tags."""

    kind: str
    physical: str
    arn: str
    tags: dict[str, str]
    handle: dict[str, Any] = field(default_factory=dict)


def owned_by(tags: dict[str, str], env: str) -> bool:
    return tags.get(OWNER_TAG) == OWNER_VALUE and tags.get(ENV_TAG) == env


def ownership_tags(env: str) -> dict[str, str]:
    return {OWNER_TAG: OWNER_VALUE, ENV_TAG: env}


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    """`{"k": "v"}` -> `[{"Key": "k", "Value": "v"}]` (SNS, CloudWatch, DynamoDB, EC2)."""
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


class Place(Protocol):
    """Where ARNs point: partition, region and account (`*` where unknown)."""

    partition: str
    region: str
    account: str


class Session(Place, Protocol):
    """What a kind may use while planning or applying (see `daemon.reconcile.context`)."""

    env: str
    config: Any
    """The whole `Config` (for a kind that looks at other declared resources)."""

    async def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """One AWS call, within the service's concurrency limit, retried when throttled."""

    async def call_or_none(
        self, missing: frozenset[str], service: str, operation: str, **params: Any
    ) -> dict[str, Any] | None:
        """Like `call`, but None when AWS answers with one of the `missing` error codes."""

    async def poll(self, check: Callable[[], Awaitable[bool]], *, what: str, budget: float) -> None:
        """Re-check with backoff until `check()` is true; ResourceFailed after `budget` s."""

    def arn_of(self, kind: str, ref: str) -> str:
        """The ARN a reference stands for (a declared logical name, or an ARN as given). For a
        kind that `assigns_ids`, the ARN read from AWS, or the kind's wildcard form (ending in
        `/*`) while it does not exist."""

    def physical_of(self, kind: str, ref: str) -> str:
        """The AWS name a reference stands for."""


Problem = tuple[str, str]
"""(dotted config path, reason): one thing wrong in a config."""


class Kind(abc.ABC, Generic[M]):
    """One kind of AWS resource (see the module docstring)."""

    name: ClassVar[str]
    """The config table and the plan's kind: `queues`."""
    singular: ClassVar[str]
    """In addresses and messages: `queue` (`queue.readings`)."""
    model: type[M]
    """The config model of one declared resource."""
    service: ClassVar[str]
    """The AWS service (botocore client name)."""
    arn_service: ClassVar[str] = ""
    """The service an ARN of this kind names, where it differs from `service` (`elasticfilesystem`
    for the `efs` client); see `arn_namespace`."""
    name_rule: ClassVar[NameRule]
    """What AWS accepts as a physical name."""

    replace_paths: ClassVar[frozenset[str]] = frozenset()
    """Attributes that cannot change in place: a difference there means replacing the resource."""

    always_compared: ClassVar[frozenset[str]] = frozenset({"tags"})
    """Attributes compared even when the config did not write them (generated ones)."""

    assigns_ids: ClassVar[bool] = False
    """AWS names the resource by an id it assigns (`fs-...`, `E2QWRUHEXAMPLE`), so its ARN is
    known only once it exists: planning reads these kinds first (`Session.arn_of` then gives the
    real ARN to the resources that name it), and an apply that created one plans once more."""

    outputs_after_create: ClassVar[tuple[str, ...]] = ()
    """Outputs (see `Observed.outputs`) AWS assigns on creation: a planned create shows them as
    known after apply."""

    # IAM actions this kind's calls need; `daemon.reconcile.iam` turns them into grants.
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

    def __init__(self, model: type[M]) -> None:
        self.model = model

    @property
    def arn_namespace(self) -> str:
        """What the service part of this kind's ARNs says (an external reference must match)."""
        return self.arn_service or self.service

    # --- naming -----------------------------------------------------------------------------

    def finish_name(self, spec: M, name: str) -> str:
        """The physical name from the rendered template (FIFO kinds add `.fifo`)."""
        return name

    @abc.abstractmethod
    def arn(self, physical: str, where: Place) -> str:
        """The ARN of the resource named `physical`."""

    def arn_patterns(self, physical: str, where: Place) -> list[str]:
        """ARNs an IAM policy names for this resource (sub-resources included)."""
        return [self.arn(physical, where)]

    # --- what a config says -----------------------------------------------------------------

    def check_name(self, spec: M, physical: str) -> str | None:
        """Why AWS would refuse `physical` beyond `name_rule`; None when it would not."""
        return None

    def references(self, name: str, spec: M, all_declared: Any) -> list[ResourceRef]:
        """The other resources this one names (a topic's subscribed queues); `all_declared` is
        the `ResourcesConfig`."""
        return []

    def problems(self, declared: dict[str, M], all_declared: Any) -> list[Problem]:
        """Checks across resources of this kind and others (`all_declared` is the
        `ResourcesConfig`); field-level rules belong on the model."""
        return []

    def derived(self, name: str, spec: M, name_template: str) -> list[Derived]:
        """Resources of other kinds this one implies (a function's log group and alarms), so
        they are planned, ordered, granted and pruned as their own kinds do it, written once.
        `name_template` is `resources.name_template`, for names that follow this resource's."""
        return []

    # --- the adapter ------------------------------------------------------------------------

    @abc.abstractmethod
    def desired(self, res: Declared, ctx: Session) -> dict[str, Any]:
        """Everything the config implies, in the config's vocabulary, normalised like `read`."""

    def compared(self, res: Declared) -> set[str]:
        """The attributes drift is judged on: those the file wrote, and generated ones."""
        return res.spec.declared() | set(self.always_compared)

    @abc.abstractmethod
    async def read(self, ctx: Session, res: Declared) -> Observed | None:
        """The resource as it is, or None when it does not exist."""

    @abc.abstractmethod
    async def create(self, ctx: Session, res: Declared, desired: dict[str, Any]) -> None:
        """Create it with as much of `desired` as the create call takes (the applier then
        updates whatever differs). Raise RetryAfter when AWS asks to wait."""

    @abc.abstractmethod
    async def update(
        self,
        ctx: Session,
        res: Declared,
        observed: Observed,
        desired: dict[str, Any],
        changed: set[str],
    ) -> None:
        """Bring the `changed` top-level attributes to their desired values."""

    @abc.abstractmethod
    async def delete(self, ctx: Session, found: Found) -> None:
        """Delete a resource (ownership was checked by the caller). Raise DeletePending when
        AWS needs more than one pass for it."""

    def delete_note(self, found: Found) -> str:
        """What the plan says about deleting `found` beyond "no longer declared" (steps AWS
        imposes); empty when nothing."""
        return ""

    @abc.abstractmethod
    async def discover(self, ctx: Session) -> list[Found]:
        """Resources of this kind owned by awsd in this environment (for pruning)."""

    def found(self, res: Declared, observed: Observed) -> Found:
        """The Found form of a declared resource, for replacing it."""
        arn = observed.arn or res.arn
        return Found(res.kind, res.physical, arn, observed.tags, dict(observed.handle))


Derived = tuple[str, str, ResourceBase]
"""(kind, logical name, spec) of a resource another one implies (see `Kind.derived`)."""


def duplicates(values: Iterable[str]) -> list[str]:
    """The values that occur more than once, sorted."""
    seen: set[str] = set()
    twice: set[str] = set()
    for value in values:
        (twice if value in seen else seen).add(value)
    return sorted(twice)
