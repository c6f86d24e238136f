"""The configuration model: the runtime sections every deployment has.

Capability sections (messaging, kinesis, probes, metrics, resources) live in sibling modules and
are attached to `Config` here, so this file is the one table of contents of the config file.
Defaults are the safe production choice; `configs/*.toml` hold what differs per environment.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError, model_validator

from daemon.base.fields import Entrypoint, Host, HttpUrl, Name, Section, StateDir
from daemon.config.cloudwatch_logs import CloudWatchLogsConfig
from daemon.config.ingest import IngestConfig
from daemon.config.kinesis import KinesisConfig
from daemon.config.messaging import SnsPublisherConfig, SqsPollerConfig
from daemon.config.metrics import MetricsConfig
from daemon.config.outbox import OutboxConfig
from daemon.config.probes import ProbesConfig, resolve_self_urls
from daemon.config.resources import ResourcesConfig

AwsService = Literal["sns", "sqs", "kinesis", "s3", "dynamodb", "cloudwatch", "logs", "sts", "iam"]
LogLevel = Literal["debug", "info", "warning", "error"]


def _default_state_dir() -> str:
    # systemd's StateDirectory= sets STATE_DIRECTORY; elsewhere the FHS location.
    return os.environ.get("STATE_DIRECTORY", "/var/lib/awsd").split(":")[0]


class AwsConfig(Section):
    """How awsd reaches AWS. Credentials never live here: they come from the standard chain
    (environment, shared profile, EC2 instance role through IMDSv2)."""

    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    """AWS region, for example `eu-west-1`. Unset: AWS_REGION / AWS_DEFAULT_REGION, the profile,
    then the EC2 instance metadata service (IMDSv2)."""

    profile: str | None = None
    """Shared-credentials profile name (`~/.aws/credentials`). Unset: the default chain."""

    endpoint_url: HttpUrl | None = None
    """Endpoint for every service (a LocalStack or moto server).
    Unset: AWS_ENDPOINT_URL, else AWS itself."""

    endpoints: dict[AwsService, HttpUrl] = Field(default_factory=dict)
    """Per-service endpoints, for example `{ sqs = "http://127.0.0.1:4566" }`; they win over
    `endpoint_url` and over AWS_ENDPOINT_URL_<SERVICE>."""

    retry_mode: Literal["adaptive", "standard", "legacy"] = "adaptive"
    """botocore retry mode; `adaptive` adds client-side rate limiting when AWS throttles."""

    max_attempts: int = Field(default=5, ge=1, le=20)
    """Attempts per API call, the first included, before botocore gives up."""

    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    """Seconds to establish a connection."""

    read_timeout: float = Field(default=30.0, gt=0, le=900)
    """Seconds to wait for a response. SQS long polls raise it above their wait time."""

    max_pool_connections: int = Field(default=20, ge=1, le=500)
    """Connections kept open per service client."""

    local: bool = False
    """Start an embedded moto server as a child process and point every client at it with dummy
    credentials (AWS_ENDPOINT_URL, when set, is used instead). For trying awsd with no account."""

    local_port: int = Field(default=0, ge=0, le=65535)
    """Loopback port of the embedded moto server; 0 picks a free one. With a fixed port, a moto
    server already answering there is reused, so `awsd plan` and the AWS CLI
    (`--endpoint-url http://127.0.0.1:PORT`) see what the running daemon sees. When something
    else holds the port, the server starts on a free one instead, with a warning."""


class LogConfig(Section):
    """Structured logs: JSON lines on stdout for journald, or a console layout for humans."""

    level: LogLevel = "info"
    """Lowest level written."""

    format: Literal["auto", "json", "console"] = "auto"
    """`auto` writes the console layout when stdout is a terminal and JSON otherwise."""

    library_level: LogLevel = "warning"
    """Lowest level for botocore, aiohttp and asyncio's own loggers."""

    cloudwatch: CloudWatchLogsConfig = Field(default_factory=CloudWatchLogsConfig)
    """Shipping every event to a CloudWatch Logs group and stream."""

    redact_query: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=100
    )
    """More URL query parameters whose values are masked wherever a URL leaves awsd (logs,
    /status, alerts, `check-config`, metric labels), besides those whose names look secret
    (`token`, `api_key`, `password`, `sig`, `key`, ...). Case-insensitive."""


class HealthConfig(Section):
    """The loopback HTTP server with /healthz, /readyz and /status."""

    host: Host = "127.0.0.1"
    """Address to listen on. Keep it on loopback unless a firewall guards the port."""

    port: int = Field(default=9180, ge=0, le=65535)
    """TCP port; 0 disables the server."""

    max_connections: int = Field(default=64, ge=1, le=10_000)
    """Connections open at once, at most (and never more than a quarter of the process's
    file-descriptor limit, so the AWS clients keep theirs). At the cap a new connection closes
    the oldest idle one, or is refused while all are busy."""

    idle_timeout: float = Field(default=5.0, gt=0, le=300)
    """Seconds a connection may stay without a complete request (idle keep-alive, or headers
    still arriving); then it is closed."""

    body_timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds a request body (POST /publish) may take to arrive; then the request is answered
    408 and the connection closed."""

    @property
    def url(self) -> str:
        """Where a client on this machine reaches it (`http://127.0.0.1:9180`)."""
        return local_url(self.host, self.port)


def local_url(host: str, port: int) -> str:
    """`http://HOST:PORT` for a client on this machine of a server listening on `host`: a
    wildcard address (`0.0.0.0`, `::`) is reached on loopback; IPv6 addresses get brackets."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


class RuntimeConfig(Section):
    """Supervisor, shutdown, reload and state settings."""

    state_dir: StateDir = Field(default_factory=_default_state_dir)
    """Directory for durable state (outbox, checkpoints, alert state). Default: systemd's
    STATE_DIRECTORY, else /var/lib/awsd. Relative paths are relative to the working directory."""

    shutdown_timeout: float = Field(default=20.0, gt=0, le=600)
    """Seconds a graceful stop may take, flushing included; then awsd exits regardless."""

    watch_config: bool = False
    """Reload when a config file changes on disk, as well as on SIGHUP."""

    watch_debounce: float = Field(default=2.0, ge=0.1, le=60)
    """Seconds a changed file must stay unchanged before the reload."""

    restart_backoff: float = Field(default=1.0, gt=0, le=60)
    """Seconds before restarting a crashed worker the first time; doubles per crash, with jitter."""

    restart_backoff_max: float = Field(default=60.0, gt=0, le=3600)
    """Cap of the restart delay."""

    failed_after: int = Field(default=5, ge=1, le=1000)
    """Consecutive crashes after which a worker shows as `failed` in health (it is still
    restarted at the capped delay, so it recovers by itself once the cause is gone)."""

    stall_timeout: float = Field(default=120.0, ge=1, le=3600)
    """Seconds without progress after which a worker counts as stuck, and the systemd watchdog is
    no longer fed."""

    @model_validator(mode="after")
    def _backoff_order(self) -> RuntimeConfig:
        if self.restart_backoff_max < self.restart_backoff:
            raise ValueError("restart_backoff_max must be at least restart_backoff")
        return self


class CustomWorkerConfig(Section):
    """A worker written in Python by the user: `async def run(ctx, options)`."""

    entrypoint: Entrypoint
    """The coroutine function, as `package.module:function`."""

    options: dict[str, Any] = Field(default_factory=dict)
    """Passed to the function as its second argument."""

    stall_timeout: float | None = Field(default=None, ge=1, le=3600)
    """Seconds without `ctx.beat()` after which the worker counts as stuck; unset: not watched."""


class Config(Section):
    """One environment's resolved configuration."""

    env: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")
    """Environment name (local, dev, prod, pi, ...): shown in logs and metrics and written into the
    `awsd:env` tag of every resource awsd creates."""

    extends: str | list[str] | None = Field(default=None, exclude=True)
    """File(s) this one is laid over, relative to it.
    Deep merge: tables merge key by key, anything else replaces."""

    aws: AwsConfig = Field(default_factory=AwsConfig)
    """AWS region, endpoints, retries and timeouts."""

    log: LogConfig = Field(default_factory=LogConfig)
    """Log level and format."""

    health: HealthConfig = Field(default_factory=HealthConfig)
    """The health and status HTTP server."""

    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    """Supervisor, shutdown and reload settings."""

    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    """Metrics exporters: CloudWatch PutMetricData, EMF, Prometheus."""

    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    """The durable outbox outgoing messages pass through."""

    kinesis: KinesisConfig = Field(default_factory=KinesisConfig)
    """Kinesis stream readers (checkpoints, fleet leases, S3 archive) and the producer."""

    custom: dict[Name, CustomWorkerConfig] = Field(default_factory=dict)
    """User-written Python workers, by name."""

    sqs: dict[Name, SqsPollerConfig] = Field(default_factory=dict)
    """SQS pollers, by name: each polls one queue with its own worker `sqs:<name>`."""

    sns: SnsPublisherConfig | None = None
    """The SNS publisher (readings, events, `awsd publish`); unset: not running."""

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    """The local ingest endpoint (`POST /publish`, `awsd publish`): its token, the destinations
    it may publish to, browsers kept out, a per-client rate."""

    probes: ProbesConfig = Field(default_factory=ProbesConfig)
    """HTTP, TCP and DNS uptime probes, their conditions, and alerts through SNS and SMS."""

    @model_validator(mode="before")
    @classmethod
    def _resolve_self_urls(cls, data: Any) -> Any:
        """`self:/PATH` probe URLs, once the health server's address is known."""
        if not isinstance(data, dict):
            return data
        health = data.get("health", {})
        if not isinstance(health, HealthConfig):
            try:
                health = HealthConfig.model_validate(health)
            except ValidationError:
                return data  # [health]'s own errors are reported by the validation
        return resolve_self_urls(data, health.url if health.port else None)

    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    """Declared AWS resources (topics, queues, streams, buckets, log groups, alarms, tables)
    and how the reconciler keeps them as declared."""
