"""Config of the messaging workers: SQS pollers (`[sqs.<name>]`) and the SNS publisher (`[sns]`).

Each poller is its own worker (`sqs:<name>`) with its own fingerprint, so a reload restarts only
the queue whose section changed. Defaults follow what experienced SQS users expect (20 s long
polls, batches of 10, a heartbeat, failures backed off by receive count).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from daemon.base.fields import Name, QueueRef, Section, StreamRef, TopicRef
from daemon.config.handlers import HandlerConfig, LogHandlerConfig
from daemon.config.partition import PartitionKeyConfig

MAX_VISIBILITY = 43_200
"""SQS's limit: a message cannot stay invisible more than 12 hours after it was received."""


class SqsPollerConfig(Section):
    """One queue, polled by its own worker `sqs:<name>`."""

    queue: QueueRef
    """The queue: a declared queue's logical name (`[resources.queues.<name>]`), its URL, or its
    ARN."""

    handler: HandlerConfig = Field(default_factory=lambda: LogHandlerConfig(kind="log"))
    """What to do with each message: `log`, `python`, `forward` or `command`."""

    wait_time_seconds: int = Field(default=20, ge=0, le=20)
    """Long-poll wait per receive (the HTTP read timeout is set above it)."""

    batch_size: int = Field(default=10, ge=1, le=10)
    """Most messages per receive."""

    max_in_flight: int = Field(default=10, ge=1, le=1000)
    """Most messages being handled at once, independent of `batch_size`: the poller receives
    only when a slot is free, asking for no more messages than there are free slots. A slot is
    free once its message's ack is queued; acks waiting for SQS are bounded by the same number
    (so at most twice this many messages are invisible because of this poller). On a standard
    queue with room for several batches, up to `max_in_flight // batch_size` receives are in
    flight at once: behind a long round trip, that many batches arrive per round trip."""

    visibility_timeout: int | None = Field(default=None, ge=1, le=MAX_VISIBILITY)
    """Seconds a received message stays invisible, asked for on receive and renewed by the
    heartbeat; unset: the queue's VisibilityTimeout."""

    heartbeat: bool = True
    """Extend the visibility of messages still being handled before it runs out, until they
    are acked or fail (never past 12 hours after receipt). Off: a handler that outlasts the
    visibility timeout sees its message delivered again."""

    heartbeat_interval: float | None = Field(default=None, gt=0, le=MAX_VISIBILITY)
    """Seconds between extensions of one message; unset: a third of the visibility timeout."""

    handler_timeout: float | None = Field(default=300.0, gt=0, le=MAX_VISIBILITY)
    """Seconds a handler may take; then it is cancelled and the message counts as failed (it is
    not acked). Unset: no limit (the heartbeat still stops at 12 hours)."""

    on_failure: Literal["backoff", "redrive"] = "backoff"
    """What a failed message gets: `backoff` sets its visibility to `failure_backoff` doubled
    per ApproximateReceiveCount (with jitter, up to `failure_backoff_max`); `redrive` leaves it
    to come back after the visibility timeout. Either way the queue's redrive policy moves it to
    the dead-letter queue after maxReceiveCount receives."""

    failure_backoff: float = Field(default=5.0, ge=0, le=MAX_VISIBILITY)
    """Seconds a message stays invisible after its first failure (`on_failure = "backoff"`)."""

    failure_backoff_max: float = Field(default=900.0, ge=0, le=MAX_VISIBILITY)
    """Cap of the failure backoff."""

    dedup_window: int = Field(default=4096, ge=0, le=1_000_000)
    """How many recently handled SNS MessageIds (and SQS MessageIds) are remembered, so that a
    copy delivered again is deleted without running the handler; 0 turns it off."""

    receive_backoff: float = Field(default=1.0, gt=0, le=600)
    """Seconds before retrying after a failed receive (throttling, endpoint down); doubles per
    failure with jitter, up to `receive_backoff_max`."""

    receive_backoff_max: float = Field(default=60.0, gt=0, le=3600)
    """Cap of the receive backoff."""

    ack_linger: float = Field(default=0.02, ge=0, le=5)
    """Seconds an ack may wait for others to share its DeleteMessageBatch call."""

    @model_validator(mode="after")
    def _orders(self) -> SqsPollerConfig:
        if self.failure_backoff_max < self.failure_backoff:
            raise ValueError("failure_backoff_max must be at least failure_backoff")
        if self.receive_backoff_max < self.receive_backoff:
            raise ValueError("receive_backoff_max must be at least receive_backoff")
        return self


class ReadingConfig(Section):
    """A periodic reading: a file's content or a command's output, published as JSON
    `{"name", "value", "unit", "host", "time"}` every `interval` seconds (start to start; a
    missed tick is skipped, never made up in a burst)."""

    file: str | None = None
    """File to read, for example `/sys/class/thermal/thermal_zone0/temp`."""

    command: list[str] | None = Field(default=None, min_length=1)
    """Program (and arguments, no shell) whose stdout is the value; it must exit 0."""

    interval: float = Field(default=60.0, ge=0.05, le=86_400)
    """Seconds between readings."""

    timeout: float = Field(default=10.0, gt=0, le=3600)
    """Seconds the file read or command may take; a reading that outlasts its interval makes
    the ticks it covered be skipped."""

    topic: TopicRef | None = None
    """A declared topic's logical name, or a topic ARN; unset: `sns.topic` (unless `stream`)."""

    stream: StreamRef | None = None
    """Put the reading on this Kinesis stream instead (a declared stream's logical name, or an
    ARN), through the same outbox."""

    partition_key: PartitionKeyConfig | None = None
    """With `stream`: how the record's partition key is chosen; unset: the reading's name, so
    one reading's records stay in order on one shard."""

    scale: float | None = None
    """Multiply a numeric value by this (0.001 turns millidegrees into degrees)."""

    unit: str | None = None
    """Unit written next to the value (`C`, `%`, `hPa`)."""

    subject: str | None = Field(default=None, max_length=99)
    """SNS subject."""

    attributes: dict[str, str] = Field(default_factory=dict)
    """SNS message attributes (subscription filter policies can use them)."""

    group_id: str | None = Field(default=None, min_length=1, max_length=128)
    """Message group id for a FIFO topic; unset: the reading's name."""

    @model_validator(mode="after")
    def _one_source(self) -> ReadingConfig:
        if (self.file is None) == (self.command is None):
            raise ValueError("set exactly one of `file` and `command`")
        if self.stream is not None:
            sns_only = [n for n in ("topic", "subject", "group_id") if getattr(self, n)]
            if self.attributes:
                sns_only.append("attributes")
            if sns_only:
                raise ValueError(f"{', '.join(sns_only)}: SNS settings, not for a `stream` reading")
        elif self.partition_key is not None:
            raise ValueError("`partition_key` goes with `stream`")
        return self


class SnsPublisherConfig(Section):
    """The SNS publisher: readings, events from other workers and local ingest (`awsd publish`,
    POST /publish), all through the durable outbox."""

    topic: TopicRef | None = None
    """Default topic (a declared topic's logical name, or an ARN): for `awsd publish` without
    `--topic`, readings without their own topic and events that name none."""

    ingest: Literal["loopback", "any", "off"] = "loopback"
    """Who may POST /publish on the health server: loopback clients only (`awsd publish` on this
    machine), anyone who can reach the port, or nobody. Either way a client must also show the
    ingest token (see `[ingest]` and docs/security.md)."""

    events: bool = True
    """Publish the PublishRequest events other workers put on the event bus."""

    notify: dict[str, str] = Field(default_factory=dict)
    """Events from other workers published as one line of text to a topic, by event type, for
    example `{ ResourceDrifted = "alerts", ResourceContested = "alerts" }` (any event of
    `daemon/core/events.py` with a text form). They carry the attribute `awsd_event` = the type."""

    event_queue: int = Field(default=1000, ge=1, le=1_000_000)
    """Events waiting for the outbox at most; more are dropped, counted and logged."""

    host: str | None = None
    """Host name written into readings; unset: this machine's name."""

    readings: dict[Name, ReadingConfig] = Field(default_factory=dict)
    """Periodic readings, by name."""
