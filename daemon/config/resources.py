"""The `[resources]` section: AWS resources awsd declares, creates and keeps as declared.

Tables are keyed by kind and logical name, so the config reads like a small inventory:

    [resources.queues.readings]
    visibility_timeout = 60
    redrive = { dead_letter_queue = "readings-dlq", max_receive_count = 5 }

The logical name (`readings`) is what workers and other resources refer to; the physical AWS name
comes from the resource's `name` or from `resources.name_template` (`{env}-{name}` by default),
so one base file serves every environment and dev and prod never collide in one account.

What the reconciler compares is what the file says: a field left out is never compared (AWS keeps
its default or whatever someone set), and a field with a default that was not written is used
when creating but not enforced afterwards. `ignore` exempts attribute paths explicitly.

The kinds are the fields at the end of `ResourcesConfig`, one line each, in the order a fresh
account is built (dependencies first); each names its module in `daemon/resources/`, which owns
the model, the naming rule, the ARN and the adapter. `KINDS` and every table by kind are derived
from those fields.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from daemon.base.fields import Name, Section, TableRef
from daemon.resources.alarms import ALARMS, AlarmConfig
from daemon.resources.buckets import BUCKETS, BucketConfig
from daemon.resources.distributions import DISTRIBUTIONS, DistributionConfig
from daemon.resources.file_systems import FILE_SYSTEMS, FileSystemConfig
from daemon.resources.functions import FUNCTIONS, FunctionConfig
from daemon.resources.kind import Kind, Problem, ResourceBase, ResourceRef
from daemon.resources.log_groups import LOG_GROUPS, LogGroupConfig
from daemon.resources.queues import QUEUES, QueueConfig
from daemon.resources.streams import STREAMS, StreamConfig
from daemon.resources.tables import TABLES, TableConfig
from daemon.resources.topics import TOPICS, TopicConfig

PLACEHOLDERS = ("env", "name", "region", "account")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class ResourcesConfig(Section):
    """Declared AWS resources and how the reconciler keeps them."""

    mode: Literal["off", "detect", "enforce"] = "detect"
    """`detect`: compare and report drift (logs, metrics, events); `enforce`: also fix it;
    `off`: no reconciler worker (`awsd plan`/`apply` still work)."""

    interval: float = Field(default=300.0, ge=1, le=86400)
    """Seconds between reconcile passes (and one after every reload)."""

    jitter: float = Field(default=0.1, ge=0, le=0.5)
    """Fraction of the interval added or taken at random, so a fleet does not call in step."""

    reconcile_at_start: bool = True
    """With `mode = "enforce"`: run one pass at startup while the other workers wait to begin,
    so the queues and topics they use exist when they first need them (bounded by
    `startup_timeout`). READY=1 does not wait for it."""

    startup_timeout: float = Field(default=15.0, gt=0, le=600)
    """Seconds the startup pass may hold the other workers; the reconciler carries on after."""

    name_template: str = "{env}-{name}"
    """Physical name of a resource with no `name`: `{env}`, `{name}`, `{region}`, `{account}`."""

    prune: bool = False
    """Delete resources awsd owns in this environment (tagged `managed-by = awsd` and
    `awsd:env = <env>`) that are no longer declared. Never touches anything else."""

    max_deletes: int = Field(default=5, ge=1, le=1000)
    """More pending deletions than this in one plan blocks all of them (a renamed environment
    or a truncated file should not empty an account)."""

    enforce_replace: bool = False
    """Let the worker replace resources whose change needs it (a table's key schema). Off: such
    drift is reported and left to `awsd apply`."""

    flap_threshold: int = Field(default=3, ge=2, le=100)
    """The same fix applied this many times within `flap_window` marks the resource contested:
    another tool is changing it back, and the reconciler stops fighting and reports it."""

    flap_window: float = Field(default=3600.0, ge=1, le=604800)
    """Seconds over which repeated fixes are counted."""

    lease_table: TableRef | None = None
    """Only one daemon of a fleet reconciles: the one holding the lease `reconciler:<env>` in
    this DynamoDB table (a declared table's logical name, or a table ARN); the table is created
    on first use. Unset: this daemon reconciles alone."""

    lease_failover: float = Field(default=10.0, ge=1, le=600)
    """Seconds without a renewal after which another daemon takes the lease over."""

    concurrency: int = Field(default=4, ge=1, le=32)
    """AWS calls in flight per service during a pass."""

    converge_timeout: float = Field(default=30.0, ge=0, le=600)
    """Seconds to wait, re-reading with backoff, for a change to become visible (AWS is
    eventually consistent); after that the next pass checks again."""

    # --- the kinds, in build order (dependencies first): one line each -----------------------

    tables: Annotated[dict[Name, TableConfig], TABLES] = Field(default_factory=dict)
    """DynamoDB tables by logical name."""

    log_groups: Annotated[dict[Name, LogGroupConfig], LOG_GROUPS] = Field(default_factory=dict)
    """CloudWatch Logs log groups by logical name."""

    buckets: Annotated[dict[Name, BucketConfig], BUCKETS] = Field(default_factory=dict)
    """S3 buckets by logical name."""

    queues: Annotated[dict[Name, QueueConfig], QUEUES] = Field(default_factory=dict)
    """SQS queues by logical name."""

    topics: Annotated[dict[Name, TopicConfig], TOPICS] = Field(default_factory=dict)
    """SNS topics by logical name."""

    streams: Annotated[dict[Name, StreamConfig], STREAMS] = Field(default_factory=dict)
    """Kinesis data streams by logical name."""

    functions: Annotated[dict[Name, FunctionConfig], FUNCTIONS] = Field(default_factory=dict)
    """Lambda functions by logical name (with their execution roles, log groups and alarms)."""

    alarms: Annotated[dict[Name, AlarmConfig], ALARMS] = Field(default_factory=dict)
    """CloudWatch alarms by logical name."""

    distributions: Annotated[dict[Name, DistributionConfig], DISTRIBUTIONS] = Field(
        default_factory=dict
    )
    """CloudFront distributions by logical name."""

    file_systems: Annotated[dict[Name, FileSystemConfig], FILE_SYSTEMS] = Field(
        default_factory=dict
    )
    """EFS file systems by logical name (with their mount targets and access points)."""

    @field_validator("name_template")
    @classmethod
    def _template_names_the_resource(cls, value: str) -> str:
        check_template(value)
        if "{name}" not in value:
            raise ValueError("must contain {name}, or every resource of a kind gets the same name")
        return value

    def of_kind(self, kind: str) -> dict[str, ResourceBase]:
        """The resources of a kind: those the file declares, and those other declared resources
        imply (`Kind.derived`: a function's log group and alarms)."""
        return self._with_derived[kind]

    @cached_property
    def _with_derived(self) -> dict[str, dict[str, ResourceBase]]:
        out: dict[str, dict[str, ResourceBase]] = {
            k.name: dict(getattr(self, k.name)) for k in KINDS
        }
        for kind in KINDS:
            for name, spec in getattr(self, kind.name).items():
                for other, derived_name, derived_spec in kind.derived(
                    name, spec, self.name_template
                ):
                    out[other].setdefault(derived_name, derived_spec)
        return out

    def _derived_problems(self) -> list[Problem]:
        """A derived resource must not take the logical name of one the file declares."""
        problems = []
        for kind in KINDS:
            for name, spec in getattr(self, kind.name).items():
                for other, derived_name, _ in kind.derived(name, spec, self.name_template):
                    if derived_name in getattr(self, other):
                        problems.append(
                            (
                                f"resources.{other}.{derived_name}",
                                f"resources.{kind.name}.{name} implies a {KIND[other].singular} "
                                f"of this name; rename one of them",
                            )
                        )
        return problems

    def declared(self) -> list[tuple[str, str, ResourceBase]]:
        """Every declared resource as (kind, logical name, spec), in build order."""
        return [(k.name, n, spec) for k in KINDS for n, spec in self.of_kind(k.name).items()]

    def physical_name(
        self,
        kind: str,
        logical: str,
        *,
        env: str,
        region: str = "*",
        account: str = "*",
    ) -> str:
        """The AWS name of a declared resource (the `.fifo` suffix added where it belongs)."""
        spec = self.of_kind(kind)[logical]
        template = spec.name or self.name_template
        name = render_template(template, env=env, name=logical, region=region, account=account)
        return KIND[kind].finish_name(spec, name)

    def references(self) -> list[ResourceRef]:
        """References between declared resources (and the reconciler's lease table)."""
        refs = [
            ref
            for kind in KINDS
            for name, spec in self.of_kind(kind.name).items()
            for ref in kind.references(name, spec, self)
        ]
        if self.lease_table:
            refs.append(
                ResourceRef("tables", self.lease_table, "resources.lease_table", "reconciler")
            )
        return refs

    def problems(self, env: str) -> list[Problem]:
        """What AWS would refuse across resources: names, pairs that cannot work together."""
        problems = self._name_problems(env) + self._derived_problems()
        for kind in KINDS:
            problems += kind.problems(self.of_kind(kind.name), self)
        problem = lease_table_problem(self, self.lease_table)
        if problem:
            problems.append((f"resources.tables.{self.lease_table}.partition_key", problem))
        return problems

    def _name_problems(self, env: str) -> list[Problem]:
        """Physical names AWS would refuse, and two declarations landing on one AWS name."""
        problems: list[Problem] = []
        for kind_name, logical, spec in self.declared():
            kind = KIND[kind_name]
            path = f"resources.{kind_name}.{logical}"
            if spec.name is not None:
                try:
                    check_template(spec.name)
                except ValueError as exc:
                    problems.append((f"{path}.name", str(exc)))
                    continue
            physical = self.physical_name(
                kind_name, logical, env=env, region="us-east-1", account="123456789012"
            )
            rule = kind.name_rule
            if not rule.pattern.match(physical):
                where = f"{path}.name" if spec.name else path
                problems.append(
                    (
                        where,
                        f"AWS name {physical!r} is not a valid {kind.singular} name: {rule.help}"
                        + ("" if spec.name else " (set `name`, or change resources.name_template)"),
                    )
                )
            extra = kind.check_name(spec, physical)
            if extra:
                problems.append((path, extra))
        for kind in KINDS:
            seen: dict[str, str] = {}
            for logical in self.of_kind(kind.name):
                physical = self.physical_name(kind.name, logical, env=env)
                if physical in seen:
                    problems.append(
                        (
                            f"resources.{kind.name}.{logical}",
                            f"has the same AWS name {physical!r} as "
                            f"resources.{kind.name}.{seen[physical]}",
                        )
                    )
                seen.setdefault(physical, logical)
        return problems


KINDS: tuple[Kind[Any], ...] = tuple(
    meta
    for info in ResourcesConfig.model_fields.values()
    for meta in info.metadata
    if isinstance(meta, Kind)
)
"""Every kind, in the order a fresh account is built (dependencies first)."""

KIND: dict[str, Kind[Any]] = {kind.name: kind for kind in KINDS}
"""Kinds by their config table name (`queues`)."""


def lease_table_problem(resources: ResourcesConfig, ref: str | None) -> str | None:
    """Why a declared table cannot hold leases: it must have the key `daemon.core.leases` writes
    (`lease_key`, a string) and no sort key. None when it can, or is not declared (an external
    table is not checked)."""
    table = resources.tables.get(ref or "")
    if table is None:
        return None
    if (table.partition_key, table.partition_key_type, table.sort_key) == ("lease_key", "S", None):
        return None
    has = f"partition_key = {table.partition_key!r} ({table.partition_key_type})" + (
        f" and sort_key = {table.sort_key!r}" if table.sort_key else ""
    )
    return (
        f'a lease table needs partition_key = "lease_key" (a string) and no sort key; it has {has}'
    )


def check_template(template: str) -> None:
    """Raise ValueError naming an unknown placeholder."""
    for match in _PLACEHOLDER.finditer(template):
        if match.group(1) not in PLACEHOLDERS:
            raise ValueError(
                f"unknown placeholder {{{match.group(1)}}} "
                f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
            )


def render_template(template: str, **values: str) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
