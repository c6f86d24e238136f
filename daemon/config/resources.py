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

The physical-name rules of each kind live here (`NAME_RULES`), next to the models, so
`check-config` rejects a name AWS would refuse before anything is sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from daemon.base.fields import Name, Section

ResourceKind = Literal["topics", "queues", "streams", "buckets", "log_groups", "alarms", "tables"]
KINDS: tuple[ResourceKind, ...] = (
    "tables",
    "log_groups",
    "buckets",
    "queues",
    "topics",
    "streams",
    "alarms",
)
"""Every kind, in the order a fresh account is built (dependencies first)."""

SINGULAR: dict[ResourceKind, str] = {
    "topics": "topic",
    "queues": "queue",
    "streams": "stream",
    "buckets": "bucket",
    "log_groups": "log_group",
    "alarms": "alarm",
    "tables": "table",
}

PLACEHOLDERS = ("env", "name", "region", "account")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _policy_document(value: Any) -> dict[str, Any] | None:
    """A policy given as a TOML table or as JSON text; either way a dict with `Statement`."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object (or a TOML table)")
    if "Statement" not in value:
        raise ValueError("a policy document needs a 'Statement' list")
    return value


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
            if key == "managed-by" or key.startswith("awsd:"):
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


# --- SNS --------------------------------------------------------------------------------------

SubscriptionProtocol = Literal["sqs", "lambda", "http", "https", "email", "email-json", "sms"]
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class SubscriptionConfig(Section):
    """One subscription of a topic."""

    protocol: SubscriptionProtocol
    """Delivery protocol."""

    endpoint: str = Field(min_length=1)
    """Where to deliver: for `sqs` a declared queue's logical name or a queue ARN; for `lambda`
    a function ARN; for `http`/`https` a URL; for `email` an address; for `sms` a phone number
    in E.164 form (`+14155550100`)."""

    filter_policy: dict[str, Any] | None = None
    """SNS filter policy, for example `{ kind = ["alert"] }`."""

    filter_policy_scope: Literal["MessageAttributes", "MessageBody"] | None = None
    """What the filter policy looks at. Unset: AWS's default (message attributes)."""

    raw_delivery: bool | None = None
    """Deliver the message body as is instead of in the SNS JSON envelope (sqs, http, https)."""

    dead_letter_queue: str | None = None
    """Queue (logical name or ARN) for messages SNS could not deliver to this endpoint."""

    @model_validator(mode="after")
    def _endpoint_fits_protocol(self) -> SubscriptionConfig:
        p, e = self.protocol, self.endpoint
        if p in ("http", "https") and not e.startswith(f"{p}://"):
            raise ValueError(f"a {p} subscription needs a {p}:// URL, not {e!r}")
        if p == "lambda" and not e.startswith("arn:"):
            raise ValueError(f"a lambda subscription needs a function ARN, not {e!r}")
        if p in ("email", "email-json") and "@" not in e:
            raise ValueError(f"an {p} subscription needs an e-mail address, not {e!r}")
        if p == "sms" and not _E164.match(e):
            raise ValueError(f"an sms subscription needs an E.164 phone number, not {e!r}")
        if self.raw_delivery and p not in ("sqs", "http", "https", "firehose"):
            raise ValueError(f"raw_delivery is not available for {p} subscriptions")
        return self


class TopicConfig(ResourceBase):
    """An SNS topic and its subscriptions."""

    fifo: bool = False
    """A FIFO topic (the `.fifo` suffix is added to the name when missing)."""

    content_based_deduplication: bool | None = None
    """FIFO only: deduplicate by a hash of the body when no deduplication id is given."""

    display_name: str | None = Field(default=None, max_length=100)
    """Display name, used as the sender of SMS and e-mail messages."""

    kms_key_id: str | None = None
    """KMS key (id, ARN or alias, `alias/aws/sns` for the AWS managed key) for encryption at
    rest. Unset: not compared."""

    attributes: dict[str, str] = Field(default_factory=dict)
    """Other topic attributes by their AWS name (`SignatureVersion`, `TracingConfig`, ...)."""

    subscriptions: list[SubscriptionConfig] = Field(default_factory=list)
    """Subscriptions kept on the topic. Subscriptions that are not declared are left alone."""

    @model_validator(mode="after")
    def _fifo_only(self) -> TopicConfig:
        if self.content_based_deduplication is not None and not self.fifo:
            raise ValueError("content_based_deduplication needs fifo = true")
        keys = [(s.protocol, s.endpoint) for s in self.subscriptions]
        dupes = sorted({f"{p}:{e}" for p, e in keys if keys.count((p, e)) > 1})
        if dupes:
            raise ValueError(f"duplicate subscriptions: {', '.join(dupes)}")
        return self


# --- SQS --------------------------------------------------------------------------------------


class RedriveConfig(Section):
    """Where messages go after too many receives."""

    dead_letter_queue: str = Field(min_length=1)
    """The dead-letter queue: a declared queue's logical name, or a queue ARN."""

    max_receive_count: int = Field(ge=1, le=1000)
    """Receives after which a message moves to the dead-letter queue."""


class QueueConfig(ResourceBase):
    """An SQS queue. The policy that lets subscribed topics deliver to it is generated."""

    fifo: bool = False
    """A FIFO queue (the `.fifo` suffix is added to the name when missing)."""

    content_based_deduplication: bool | None = None
    """FIFO only: deduplicate by a hash of the body when no deduplication id is given."""

    visibility_timeout: int | None = Field(default=None, ge=0, le=43200)
    """Seconds a received message stays invisible to other consumers (AWS default 30)."""

    message_retention: int | None = Field(default=None, ge=60, le=1209600)
    """Seconds a message is kept (60 s to 14 days; AWS default 4 days)."""

    delay: int | None = Field(default=None, ge=0, le=900)
    """Seconds every new message stays invisible (AWS default 0)."""

    max_message_size: int | None = Field(default=None, ge=1024, le=1048576)
    """Largest message in bytes (AWS default 1 MiB)."""

    receive_wait: int | None = Field(default=None, ge=0, le=20)
    """Default long-poll wait of ReceiveMessage in seconds (AWS default 0)."""

    redrive: RedriveConfig | None = None
    """Dead-letter queue and receive count."""

    encryption: Literal["sqs", "kms", "none"] | None = None
    """Encryption at rest: `sqs` (SQS-managed keys), `kms` (with `kms_key_id`) or `none`."""

    kms_key_id: str | None = None
    """KMS key for `encryption = "kms"` (id, ARN or alias; `alias/aws/sqs` by default)."""

    policy_statements: list[dict[str, Any]] = Field(default_factory=list)
    """Extra statements for the queue policy, besides the generated ones that let subscribed
    topics send to it."""

    @model_validator(mode="after")
    def _consistent(self) -> QueueConfig:
        if self.content_based_deduplication is not None and not self.fifo:
            raise ValueError("content_based_deduplication needs fifo = true")
        if self.kms_key_id is not None and self.encryption != "kms":
            raise ValueError('kms_key_id needs encryption = "kms"')
        return self


# --- Kinesis ----------------------------------------------------------------------------------


class StreamConfig(ResourceBase):
    """A Kinesis data stream."""

    mode: Literal["provisioned", "on-demand"] = "provisioned"
    """Capacity mode."""

    shards: int = Field(default=1, ge=1, le=10000)
    """Open shards in provisioned mode. Compared only when written, so a reshard by an
    operator is left alone unless the file says how many there should be."""

    retention_hours: int | None = Field(default=None, ge=24, le=8760)
    """Hours records are kept (24 to 8760; AWS default 24)."""

    encryption: Literal["kms", "none"] | None = None
    """Server-side encryption with KMS, or none."""

    kms_key_id: str = "alias/aws/kinesis"
    """KMS key for `encryption = "kms"`."""

    @model_validator(mode="after")
    def _consistent(self) -> StreamConfig:
        if self.mode == "on-demand" and "shards" in self.model_fields_set:
            raise ValueError("shards applies to provisioned streams only")
        return self


# --- S3 ---------------------------------------------------------------------------------------


class CorsRule(Section):
    """One CORS rule."""

    allowed_origins: list[str] = Field(min_length=1)
    """Origins allowed, for example `["https://example.com"]`."""

    allowed_methods: list[Literal["GET", "PUT", "POST", "DELETE", "HEAD"]] = Field(min_length=1)
    """HTTP methods allowed."""

    allowed_headers: list[str] = Field(default_factory=list)
    """Request headers allowed in a preflight."""

    expose_headers: list[str] = Field(default_factory=list)
    """Response headers a browser may read."""

    max_age: int | None = Field(default=None, ge=0)
    """Seconds a browser may cache the preflight response."""


class Transition(Section):
    """Move objects to another storage class."""

    days: int = Field(ge=0)
    """Days after creation."""

    storage_class: Literal[
        "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"
    ]
    """Target storage class."""


class LifecycleRule(Section):
    """One lifecycle rule."""

    id: str = Field(min_length=1, max_length=255)
    """Rule id (unique within the bucket)."""

    prefix: str = ""
    """Object key prefix the rule applies to; empty for every object."""

    enabled: bool = True
    """Whether the rule is active."""

    expire_days: int | None = Field(default=None, ge=1)
    """Delete objects this many days after creation."""

    noncurrent_expire_days: int | None = Field(default=None, ge=1)
    """With versioning: delete old versions this many days after they became noncurrent."""

    abort_incomplete_upload_days: int | None = Field(default=None, ge=1)
    """Abort multipart uploads left incomplete for this many days."""

    transitions: list[Transition] = Field(default_factory=list)
    """Storage class transitions."""


class BucketLogging(Section):
    """Server access logging."""

    target_bucket: str = Field(min_length=1)
    """Bucket that receives the logs: a declared bucket's logical name, or a bucket name or ARN
    of a bucket awsd does not manage."""

    prefix: str = ""
    """Key prefix of the log objects."""


class BucketConfig(ResourceBase):
    """An S3 bucket."""

    versioning: bool | None = None
    """Keep every version of every object (`false` suspends versioning)."""

    encryption: Literal["sse-s3", "sse-kms"] | None = None
    """Default encryption: SSE-S3 (AES256) or SSE-KMS (with `kms_key_id`)."""

    kms_key_id: str | None = None
    """KMS key for `encryption = "sse-kms"`; unset: the AWS managed key."""

    bucket_key: bool | None = None
    """Use an S3 Bucket Key with SSE-KMS (fewer KMS calls)."""

    block_public_access: bool | None = None
    """All four public access block settings on (or off)."""

    policy: dict[str, Any] | None = None
    """Bucket policy, as a TOML table or JSON text. The statements below are added to it."""

    deny_unencrypted_uploads: bool | None = None
    """Add a statement denying PutObject requests that do not ask for server-side encryption."""

    deny_insecure_transport: bool | None = None
    """Add a statement denying every request not made over TLS."""

    cors: list[CorsRule] | None = None
    """CORS rules (an empty list removes them)."""

    lifecycle: list[LifecycleRule] | None = None
    """Lifecycle rules (an empty list removes them)."""

    logging: BucketLogging | None = None
    """Server access logging to a target bucket."""

    @field_validator("policy", mode="before")
    @classmethod
    def _parse_policy(cls, value: Any) -> Any:
        return _policy_document(value)

    @model_validator(mode="after")
    def _consistent(self) -> BucketConfig:
        if self.encryption != "sse-kms" and (
            self.kms_key_id is not None or self.bucket_key is not None
        ):
            raise ValueError('kms_key_id and bucket_key need encryption = "sse-kms"')
        if self.lifecycle:
            ids = [rule.id for rule in self.lifecycle]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"duplicate lifecycle rule ids: {', '.join(dupes)}")
        return self


# --- CloudWatch -------------------------------------------------------------------------------

RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
)  # fmt: skip


class LogGroupConfig(ResourceBase):
    """A CloudWatch Logs log group."""

    retention_days: int | None = None
    """Days events are kept (one of CloudWatch's values: 1, 3, 5, 7, 14, 30, 60, 90, ...,
    3653); `0` keeps them forever. Unset: not compared."""

    @field_validator("retention_days")
    @classmethod
    def _known_retention(cls, value: int | None) -> int | None:
        if value is not None and value != 0 and value not in RETENTION_DAYS:
            raise ValueError(
                f"CloudWatch Logs does not offer {value} days; one of "
                f"{', '.join(map(str, RETENTION_DAYS))} (or 0 for forever)"
            )
        return value


COMPARISONS = {
    ">": "GreaterThanThreshold",
    ">=": "GreaterThanOrEqualToThreshold",
    "<": "LessThanThreshold",
    "<=": "LessThanOrEqualToThreshold",
}


class AlarmConfig(ResourceBase):
    """A CloudWatch metric alarm, for example on awsd's own probe metrics."""

    metric: str = Field(min_length=1, max_length=255)
    """Metric name."""

    namespace: str = Field(default="awsd", min_length=1, max_length=255)
    """Metric namespace."""

    dimensions: dict[str, str] = Field(default_factory=dict)
    """Metric dimensions, all of which the metric must carry: for a probe metric
    `{ endpoint = "home", environment = "prod", host = "pi-1" }`."""

    statistic: Literal["Average", "Sum", "Minimum", "Maximum", "SampleCount"] = "Average"
    """Statistic over each period."""

    comparison: Literal[">", ">=", "<", "<="] = ">="
    """How the statistic is compared with the threshold."""

    threshold: float
    """Threshold value."""

    period: int = Field(default=60, ge=10)
    """Seconds per evaluation period (10, 30, or a multiple of 60)."""

    evaluation_periods: int = Field(default=1, ge=1, le=1440)
    """Periods evaluated."""

    datapoints_to_alarm: int | None = Field(default=None, ge=1)
    """Breaching periods among `evaluation_periods` that raise the alarm (M out of N)."""

    treat_missing_data: Literal["breaching", "notBreaching", "ignore", "missing"] | None = None
    """How missing data points count."""

    description: str | None = Field(default=None, max_length=1024)
    """Alarm description."""

    alarm_actions: list[str] = Field(default_factory=list)
    """Topics notified when the alarm fires: declared logical names or ARNs."""

    ok_actions: list[str] = Field(default_factory=list)
    """Topics notified when it returns to OK."""

    insufficient_data_actions: list[str] = Field(default_factory=list)
    """Topics notified when data is missing."""

    @model_validator(mode="after")
    def _consistent(self) -> AlarmConfig:
        if self.period not in (10, 30) and self.period % 60:
            raise ValueError("period must be 10, 30 or a multiple of 60 seconds")
        if self.datapoints_to_alarm is not None and (
            self.datapoints_to_alarm > self.evaluation_periods
        ):
            raise ValueError("datapoints_to_alarm cannot exceed evaluation_periods")
        return self


# --- DynamoDB ---------------------------------------------------------------------------------


class TableConfig(ResourceBase):
    """A DynamoDB table (the Kinesis lease store, the reconciler's lease)."""

    partition_key: str = Field(min_length=1, max_length=255)
    """Partition (hash) key attribute. Changing it replaces the table."""

    partition_key_type: Literal["S", "N", "B"] = "S"
    """Its type: string, number or binary."""

    sort_key: str | None = Field(default=None, min_length=1, max_length=255)
    """Sort (range) key attribute, if any. Changing it replaces the table."""

    sort_key_type: Literal["S", "N", "B"] = "S"
    """Its type."""

    billing: Literal["on-demand", "provisioned"] = "on-demand"
    """Capacity mode."""

    read_capacity: int | None = Field(default=None, ge=1)
    """Provisioned read capacity units (`billing = "provisioned"`)."""

    write_capacity: int | None = Field(default=None, ge=1)
    """Provisioned write capacity units (`billing = "provisioned"`)."""

    ttl_attribute: str | None = None
    """Attribute holding an expiry time (epoch seconds) for DynamoDB's TTL."""

    point_in_time_recovery: bool | None = None
    """Continuous backups with point-in-time recovery."""

    deletion_protection: bool | None = None
    """Refuse DeleteTable while on."""

    @model_validator(mode="after")
    def _capacity(self) -> TableConfig:
        provisioned = self.billing == "provisioned"
        has_capacity = self.read_capacity is not None and self.write_capacity is not None
        if provisioned and not has_capacity:
            raise ValueError('billing = "provisioned" needs read_capacity and write_capacity')
        if not provisioned and (self.read_capacity or self.write_capacity):
            raise ValueError('read_capacity and write_capacity need billing = "provisioned"')
        return self


# --- the section ------------------------------------------------------------------------------


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

    lease_table: str | None = None
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

    topics: dict[Name, TopicConfig] = Field(default_factory=dict)
    """SNS topics by logical name."""

    queues: dict[Name, QueueConfig] = Field(default_factory=dict)
    """SQS queues by logical name."""

    streams: dict[Name, StreamConfig] = Field(default_factory=dict)
    """Kinesis data streams by logical name."""

    buckets: dict[Name, BucketConfig] = Field(default_factory=dict)
    """S3 buckets by logical name."""

    log_groups: dict[Name, LogGroupConfig] = Field(default_factory=dict)
    """CloudWatch Logs log groups by logical name."""

    alarms: dict[Name, AlarmConfig] = Field(default_factory=dict)
    """CloudWatch alarms by logical name."""

    tables: dict[Name, TableConfig] = Field(default_factory=dict)
    """DynamoDB tables by logical name."""

    @field_validator("name_template")
    @classmethod
    def _template_names_the_resource(cls, value: str) -> str:
        check_template(value)
        if "{name}" not in value:
            raise ValueError("must contain {name}, or every resource of a kind gets the same name")
        return value

    def of_kind(self, kind: ResourceKind) -> dict[str, ResourceBase]:
        declared: dict[str, ResourceBase] = getattr(self, kind)
        return declared

    def declared(self) -> list[tuple[ResourceKind, str, ResourceBase]]:
        """Every declared resource as (kind, logical name, spec), in build order."""
        return [(k, n, spec) for k in KINDS for n, spec in self.of_kind(k).items()]

    def physical_name(
        self,
        kind: ResourceKind,
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
        if getattr(spec, "fifo", False) and not name.endswith(".fifo"):
            name += ".fifo"
        return name


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


@dataclass(frozen=True, slots=True)
class NameRule:
    """What AWS accepts as a physical name of one kind."""

    pattern: re.Pattern[str]
    help: str


NAME_RULES: dict[ResourceKind, NameRule] = {
    "topics": NameRule(
        re.compile(r"^[A-Za-z0-9_-]{1,256}(\.fifo)?$"),
        "1-256 letters, digits, '-' or '_' (plus '.fifo' for FIFO topics)",
    ),
    "queues": NameRule(
        re.compile(r"^(?=.{1,80}$)[A-Za-z0-9_-]+(\.fifo)?$"),
        "1-80 letters, digits, '-' or '_' (the '.fifo' suffix included)",
    ),
    "streams": NameRule(re.compile(r"^[A-Za-z0-9_.-]{1,128}$"), "1-128 of A-Z a-z 0-9 _ . -"),
    "buckets": NameRule(
        re.compile(r"^(?!xn--)(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
        "3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit",
    ),
    "log_groups": NameRule(
        re.compile(r"^[A-Za-z0-9_./#-]{1,512}$"), "1-512 of A-Z a-z 0-9 _ - / . #"
    ),
    "alarms": NameRule(re.compile(r"^[^\x00-\x1f]{1,255}$"), "1-255 printable characters"),
    "tables": NameRule(re.compile(r"^[A-Za-z0-9_.-]{3,255}$"), "3-255 of A-Z a-z 0-9 _ . -"),
}
