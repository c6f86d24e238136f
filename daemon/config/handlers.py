"""Handler config: what to do with each SQS message or Kinesis record (`kind` picks the handler).

The SQS poller and the Kinesis reader share this union and the handlers behind it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import Field, model_validator

from daemon.base.fields import Entrypoint, HttpUrl, QueueRef, Section, StreamRef, TopicRef
from daemon.base.plugins import load_callable
from daemon.config.partition import PartitionKeyConfig
from daemon.resources.kind import Problem, ResourceRef


class LogSummaryConfig(Section):
    """One `records` event per window instead of one event per record: how many, from which
    shards or queues, the first and last ids, the partition keys, and the last body whole."""

    seconds: float = Field(default=10.0, gt=0, le=3600)
    """Longest window: the summary is logged this long after the window's first record."""

    records: int = Field(default=1000, ge=1, le=1_000_000)
    """Most records in one window: the summary is logged as soon as this many arrived."""


class LogHandlerConfig(Section):
    """Write each record as one structured log event (or a summary per window)."""

    kind: Literal["log"]
    """Handler kind."""

    level: Literal["debug", "info", "warning"] = "info"
    """Log level of the event."""

    max_chars: int = Field(default=2000, ge=0, le=1_000_000)
    """Longest body text logged; longer bodies are cut with a marker."""

    summary: LogSummaryConfig | None = None
    """Log a summary per window (`{ seconds = 10 }`) instead of every record: for a busy
    stream shown on a terminal. Unset: one `record` event per record."""


class PythonHandlerConfig(Section):
    """Call a Python function with each record: `def f(record)` or `async def f(record)`.
    Returning means success; raising means failure. A sync function runs in a thread."""

    kind: Literal["python"]
    """Handler kind."""

    entrypoint: Entrypoint
    """The function, as `package.module:function`."""


DESTINATIONS = ("sns", "sqs", "kinesis", "function", "url")
FIELD_KINDS = {"function": "lambda"}
"""The outbox kind of a `forward` field, where the two names differ."""


class ForwardHandlerConfig(Section):
    """Forward each record: to an SNS topic, an SQS queue, a Kinesis stream or a Lambda function
    through the durable outbox (the source acks only once the outbox committed it), or to an
    HTTP webhook (the source acks once the webhook answered 2xx). Set exactly one of `sns`,
    `sqs`, `kinesis`, `function`, `url`."""

    kind: Literal["forward"]
    """Handler kind."""

    sns: TopicRef | None = None
    """Topic: a declared topic's logical name, or its ARN."""

    sqs: QueueRef | None = None
    """Queue: a declared queue's logical name, its URL, or its ARN."""

    kinesis: StreamRef | None = None
    """Stream: a declared stream's logical name, or its ARN."""

    function: str | None = None
    """Lambda function, invoked asynchronously (`InvocationType=Event`): a declared function's
    logical name, or its ARN. It gets the record as JSON (see `payload`)."""

    url: HttpUrl | None = None
    """Webhook URL: the record is POSTed (see `payload`)."""

    subject: str | None = Field(default=None, max_length=100)
    """SNS subject; unset: the record's own subject (SNS envelopes), if any."""

    attributes: dict[str, str] = Field(default_factory=dict)
    """Message attributes added to the record's own (SNS, SQS); at most 10 in all."""

    keep_attributes: bool = True
    """Pass the record's own message attributes on (SNS, SQS)."""

    group_id: str | None = Field(default=None, min_length=1, max_length=128)
    """Message group id for FIFO topics and queues; unset: the record's own group id, else its
    id. The record id is always the deduplication id, so a redelivered record is not forwarded
    twice within the FIFO deduplication interval."""

    partition_key: PartitionKeyConfig | None = None
    """Kinesis: how the record's partition key is chosen, a table as for readings (see
    `[sns.readings.<name>.partition_key]`: `random`, `fixed` or a `field` of its JSON body);
    unset: the record's own group id or partition key, else its id, so a source's order per
    group or key carries over."""

    method: Literal["POST", "PUT"] = "POST"
    """Webhook HTTP method."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Webhook request headers (use `${ENV}` for tokens: they are masked in logs)."""

    payload: Literal["body", "record"] = "body"
    """Webhook body, or a function's event: `body` sends the record's body as is (Content-Type
    from its kind; to a function, a body that is not JSON goes as a JSON string); `record`
    sends JSON with id, kind, body (text, or base64 for bytes), data, attributes and meta."""

    timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds per webhook attempt."""

    retries: int = Field(default=3, ge=0, le=20)
    """Webhook retries after the first attempt, for connection errors, timeouts, 429 and 5xx
    (capped exponential backoff with jitter). Other 4xx answers fail the record at once."""

    retry_initial: float = Field(default=0.5, gt=0, le=60)
    """Seconds before the first webhook retry; doubles per retry, with jitter."""

    @model_validator(mode="after")
    def _one_destination(self) -> ForwardHandlerConfig:
        chosen = [n for n in DESTINATIONS if getattr(self, n)]
        if len(chosen) != 1:
            raise ValueError(
                "set exactly one destination: sns, sqs, kinesis, function or url"
                + (f" (got {', '.join(chosen)})" if chosen else "")
            )
        if self.partition_key is not None and not self.kinesis:
            raise ValueError("`partition_key` goes with `kinesis`")
        return self

    @property
    def destination_field(self) -> str:
        """The destination field that is set (`sns`, `function`, `url`, ...)."""
        return next(name for name in DESTINATIONS if getattr(self, name))

    @property
    def destination(self) -> tuple[Literal["sns", "sqs", "kinesis", "lambda", "url"], str]:
        """(outbox kind, target), or ("url", the webhook)."""
        field = self.destination_field
        return FIELD_KINDS.get(field, field), getattr(self, field)  # type: ignore[return-value]


class CommandHandlerConfig(Section):
    """Run a program for each record, the record on its stdin: exit code 0 means success.
    For shell-script users: `command = ["/usr/local/bin/on-reading.sh"]`."""

    kind: Literal["command"]
    """Handler kind."""

    command: list[str] = Field(min_length=1)
    """The program and its arguments (no shell). With `shell = true`, one string for /bin/sh."""

    shell: bool = False
    """Run `command[0]` through `/bin/sh -c` (pipes, globbing); off by default, so a record can
    never become shell syntax."""

    stdin: Literal["body", "record"] = "body"
    """What the program reads: the record's body as is, or JSON describing the record (id, kind,
    body, data, attributes, meta)."""

    timeout: float = Field(default=60.0, gt=0, le=86_400)
    """Seconds the program may run; then its process group gets SIGTERM (SIGKILL 2 s later) and
    the record fails."""

    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables. The program also gets the daemon's environment (without AWS
    credentials) and AWSD_RECORD_ID, AWSD_RECORD_KIND, AWSD_RECORD_SOURCE."""

    pass_aws_credentials: bool = False
    """Keep AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN in its environment."""

    cwd: str | None = None
    """Working directory; unset: the daemon's."""

    max_output: int = Field(default=4096, ge=0, le=1024 * 1024)
    """Bytes of stdout/stderr kept for the log (the rest is read and dropped)."""

    @model_validator(mode="after")
    def _shell_takes_one_string(self) -> CommandHandlerConfig:
        if self.shell and len(self.command) != 1:
            raise ValueError("with shell = true, `command` is one string for /bin/sh -c")
        return self


HandlerConfig = Annotated[
    LogHandlerConfig | PythonHandlerConfig | ForwardHandlerConfig | CommandHandlerConfig,
    Field(discriminator="kind"),
]
"""One handler; `kind` selects which."""


HandlerUse = tuple[str, str, HandlerConfig]
"""Where a handler is configured (dotted path), the worker running it, and its config."""

OUTBOX_KIND_RESOURCES: dict[str, str] = {
    "sns": "topics",
    "sqs": "queues",
    "kinesis": "streams",
    "lambda": "functions",
}
"""The resource kind an outbox destination of each kind names."""


def handler_references(uses: Iterable[HandlerUse]) -> list[ResourceRef]:
    """The topic, queue or stream each `forward` handler sends to."""
    refs = []
    for path, user, handler in uses:
        if isinstance(handler, ForwardHandlerConfig) and handler.url is None:
            kind, value = handler.destination
            where = f"{path}.{handler.destination_field}"
            refs.append(ResourceRef(OUTBOX_KIND_RESOURCES[kind], value, where, user))
    return refs


def handler_problems(uses: Iterable[HandlerUse]) -> list[Problem]:
    """A `python` handler whose function cannot be imported (refused before a reload applies)."""
    problems = []
    for path, _, handler in uses:
        if isinstance(handler, PythonHandlerConfig):
            try:
                load_callable(handler.entrypoint)
            except ValueError as exc:
                problems.append((f"{path}.entrypoint", str(exc)))
    return problems
