"""Config of the Kinesis capability: shard readers (with checkpoints, leases and an S3 archive)
and the producer (the outbox's `kinesis` sender).

A reader reads every shard of one stream and hands each record to a handler, to an S3 archive, or
both. Checkpoints live in SQLite on the host (`checkpoints.store = "sqlite"`, one daemon per
stream) or in a DynamoDB lease table shared by a fleet (`"dynamodb"`, the Kinesis Client Library
way).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from daemon.base.fields import BucketRef, KmsKeyRef, Name, Section, StateFile, StreamRef, TableRef
from daemon.config.handlers import HandlerConfig

InitialPosition = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "AT_SEQUENCE_NUMBER"]


class CheckpointConfig(Section):
    """Where and how often a reader records how far it got."""

    store: Literal["sqlite", "dynamodb"] = "sqlite"
    """`sqlite`: a local file (one daemon reads the stream); `dynamodb`: the lease table, shared
    by every daemon reading the stream (fleets; see `leases`)."""

    every_records: int = Field(default=1000, ge=1, le=1_000_000)
    """Write a shard's checkpoint after this many processed records..."""

    every_seconds: float = Field(default=10.0, gt=0, le=3600)
    """...or after this many seconds with processed records, whichever comes first. After a
    crash (or a lease taken from a daemon that looked dead) a shard repeats at most what was
    processed since its last checkpoint: fewer records repeated cost more checkpoint writes."""

    path: StateFile | None = None
    """SQLite file; unset: `kinesis-checkpoints.sqlite3` in `runtime.state_dir`."""


class LeasesConfig(Section):
    """DynamoDB leases: how daemons share a stream's shards (used with `checkpoints.store =
    "dynamodb"`)."""

    table: TableRef | None = None
    """Lease table: a declared table's logical name (`[resources.tables.<name>]` with
    `partition_key = "lease_key"`; the reconciler creates it, the reader waits for it), a table
    ARN, or the AWS name of a table of the reader's own (created if missing, on-demand billing);
    unset: `awsd-<env>-<reader>`, the reader's own. One table per reader: every daemon reading
    the stream must name the same table."""

    failover_time: float = Field(default=10.0, ge=0.5, le=600)
    """Seconds a lease's counter may stay unchanged (as seen by this daemon) before it counts as
    expired and another daemon takes it. Leases are renewed every third of it. A daemon that
    wants a lease to balance the fleet asks its owner to hand it over; unanswered for this
    long, it takes it."""

    max_leases: int = Field(default=1000, ge=1, le=100_000)
    """Most shards this daemon reads at once, whatever the balance says."""

    owner: str | None = Field(default=None, max_length=256)
    """This daemon's worker id in the table; unset: `host:pid:random` (unique per process)."""


class ArchiveConfig(Section):
    """A Firehose-like archive: records buffered per shard and written to S3 as objects under
    `prefix/YYYY/MM/DD/HH/` (UTC, from the first record's arrival time). A record is checkpointed
    only after the object holding it is written."""

    bucket: BucketRef
    """A declared bucket's logical name (`[resources.buckets.<name>]`), or a bucket ARN for one
    awsd does not manage."""

    prefix: str = Field(default="", max_length=512)
    """Key prefix, for example `raw/` (the date path follows it)."""

    buffer_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=128 * 1024 * 1024)
    """Write an object once a shard's buffer holds this many bytes..."""

    buffer_seconds: float = Field(default=300.0, gt=0, le=3600)
    """...or once its oldest record waited this long, whichever comes first."""

    gzip: bool = False
    """Compress objects with gzip (keys then end in `.gz`)."""

    encryption: Literal["AES256", "aws:kms", "none"] = "AES256"
    """Server-side encryption asked for on every object (`x-amz-server-side-encryption`), so
    buckets that deny unencrypted uploads (`deny_unencrypted_uploads` on a declared bucket)
    accept them; `none` sends no header and leaves it to the bucket's default encryption."""

    kms_key_id: KmsKeyRef | None = None
    """KMS key (id, alias or ARN) for `aws:kms`; unset: the account's `aws/s3` key."""

    format: Literal["jsonl", "lines"] = "jsonl"
    """`jsonl`: one JSON object per record with its sequence number, partition key, arrival time
    and data (text, or base64 for binary data: lossless); `lines`: the raw data, one record per
    line (what Firehose writes, plus the newline Firehose leaves out)."""


class KinesisReaderConfig(Section):
    """One stream read by every shard, each record handed to `handler` and/or `archive`."""

    stream: StreamRef
    """A declared stream's logical name (`[resources.streams.<name>]`), or a stream ARN for one
    awsd does not manage."""

    handler: HandlerConfig | None = None
    """What to do with each record (`log`, `python`, ...). Optional when `archive` is set."""

    archive: ArchiveConfig | None = None
    """Also (or only) archive every record to S3."""

    decoder: Literal["json", "text", "bytes"] = "json"
    """How far records are decoded for the handler: JSON (invalid JSON stays text, invalid UTF-8
    stays bytes), text, or raw bytes."""

    initial_position: InitialPosition = "TRIM_HORIZON"
    """Where a shard with no checkpoint starts: the oldest record (`TRIM_HORIZON`, nothing
    missed), the next new one (`LATEST`), `at_timestamp`, or `start_sequence_numbers`. Children of
    a resharded shard always start at their beginning, after their parents."""

    at_timestamp: datetime | None = None
    """Start time for `AT_TIMESTAMP` (ISO 8601 with a zone, for example
    `2024-05-01T00:00:00Z`)."""

    start_sequence_numbers: dict[str, str] = Field(default_factory=dict)
    """Shard id to sequence number for `AT_SEQUENCE_NUMBER` (that record included); shards not
    listed start at `TRIM_HORIZON`."""

    max_records: int = Field(default=1000, ge=1, le=10_000)
    """Most records per GetRecords call (its `Limit`)."""

    max_fetches_per_second: float = Field(default=5.0, gt=0, le=5)
    """GetRecords calls per second per shard at most (AWS allows 5, shared by every consumer)."""

    idle_interval: float = Field(default=1.0, ge=0.05, le=60)
    """Seconds to wait after an empty GetRecords at the tip of a shard. A shard that is behind
    (MillisBehindLatest > 0) is read again as soon as the rate limit allows."""

    shard_refresh_interval: float = Field(default=60.0, ge=1, le=3600)
    """Seconds between ListShards calls that discover new shards (also done at once when a
    shard ends)."""

    buffer_records: int = Field(default=10_000, ge=1, le=1_000_000)
    """Per shard, most fetched records waiting for the handler; when full, fetching pauses
    (records are never dropped)."""

    buffer_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=1024**3)
    """Per shard, most fetched bytes waiting for the handler (may be exceeded by one GetRecords
    response)."""

    handler_timeout: float = Field(default=60.0, gt=0, le=86_400)
    """Seconds one record may take in the handler before it is cancelled and counts as
    failed."""

    on_failure: Literal["retry", "skip"] = "retry"
    """A failed record: `retry` it with capped backoff until it succeeds (the shard waits, order
    holds; health and metrics show it), or `skip` it (logged with its sequence number, counted)."""

    retry_max: float = Field(default=60.0, gt=0, le=3600)
    """Cap of the delay between retries of a failed record or a failing AWS call."""

    checkpoints: CheckpointConfig = Field(default_factory=CheckpointConfig)
    """Checkpoint store and frequency."""

    leases: LeasesConfig = Field(default_factory=LeasesConfig)
    """Fleet leases (with `checkpoints.store = "dynamodb"`)."""

    @model_validator(mode="after")
    def _consistent(self) -> KinesisReaderConfig:
        if self.handler is None and self.archive is None:
            raise ValueError("a reader needs a handler, an archive, or both")
        if self.initial_position == "AT_TIMESTAMP" and self.at_timestamp is None:
            raise ValueError("initial_position AT_TIMESTAMP needs at_timestamp")
        if self.at_timestamp is not None and self.at_timestamp.tzinfo is None:
            raise ValueError("at_timestamp needs a time zone, for example 2024-05-01T00:00:00Z")
        if self.initial_position == "AT_SEQUENCE_NUMBER" and not self.start_sequence_numbers:
            raise ValueError("initial_position AT_SEQUENCE_NUMBER needs start_sequence_numbers")
        return self


class KinesisProducerConfig(Section):
    """How the outbox delivers `kinesis` messages (PutRecords)."""

    strict_order: bool = True
    """Keep order per partition key even when PutRecords fails part of a call: a call carries at
    most one record per key, and a key's later records wait while one of its records is retried.
    The cost is one call per record of the busiest key in a backlog (a single hot key then goes
    out at one record per round trip). `false` sends a backlog in full calls; a record that fails
    may then land after a later record of its key (counted in
    `awsd_kinesis_put_reordered_total`)."""

    shard_records_per_second: int = Field(default=1000, ge=1, le=1_000_000)
    """Records per second this daemon writes to one shard at most (AWS accepts 1000)."""

    shard_bytes_per_second: int = Field(default=1024 * 1024, ge=1024, le=1024**3)
    """Bytes per second this daemon writes to one shard at most (AWS accepts 1 MiB)."""

    shard_map_refresh: float = Field(default=60.0, ge=1, le=3600)
    """Seconds between ListShards calls that map partition keys to shards for the rate limit."""


class KinesisConfig(Section):
    """Kinesis readers and the producer."""

    readers: dict[Name, KinesisReaderConfig] = Field(default_factory=dict)
    """Stream readers, by name."""

    producer: KinesisProducerConfig = Field(default_factory=KinesisProducerConfig)
    """PutRecords delivery settings for `kinesis` outbox messages."""


def lease_table(reader: KinesisReaderConfig, name: str, env: str) -> str:
    """A reader's `leases.table` as configured (a declared table's logical name, an ARN, or an
    AWS name), or the name of the table it owns by default."""
    return reader.leases.table or f"awsd-{env}-{name}"


def lease_table_declared_or_external(table: str | None, declared: Collection[str]) -> bool:
    """Whether a reader's `leases.table` names a table the reader must not create itself: a
    declared one (the reconciler's; `declared` are the declared tables' names) or an ARN
    (someone else's)."""
    return table is not None and (table.startswith("arn:") or table in declared)
